"""The learner: one path for live feedback, journal entries and replayed records; models built
aside and swapped whole; feedback an engine cannot learn from refused before it is stored."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ltrr.config import EngineConfig, parse_config
from ltrr.engine import Engine
from ltrr.errors import IncompatibleEventError
from ltrr.types import Feedback

FIELDS = ["title", "directors", "cast", "genres", "year"]


def _config(path, **over):
    data = {
        "seed": 3,
        "catalog": {"path": str(path), "text_fields": FIELDS, "limit": 800},
        "strategies": [{"name": "bm25", "depths": [0, 10, 50]}, {"name": "memory", "depths": [0, 10]}],
        "policy": {"type": "epsilon_greedy", "params": {"epsilon": 0.2}, "budget": 100},
        "ranker": {"retrain_every": 25, "params": {"n_estimators": 10, "min_data_in_leaf": 5}},
        "store": {"event_ids": "seeded"},
    }
    data.update(over)
    return parse_config(data, "test")


def _policy_state(engine):
    return {k: v.copy() for k, v in engine.policy._state_arrays().items()}


def test_live_feedback_and_the_journal_teach_the_same_state(movie_catalog_path, small_movies):
    """Feedback applied as it arrives, and the same feedback stored first and applied later from
    the journal (the service's learner), leave identical policies, click memories and counters.
    (Full-information rewards price every plan's latency with the engine's current estimate: with
    declared latency the two are identical; with measured latency they differ by the estimates.)"""
    policy = {"type": "epsilon_greedy", "params": {"epsilon": 0.2}, "budget": 100, "latency_source": "declared"}
    live = Engine.from_config(_config(movie_catalog_path, policy=policy), catalog=small_movies)
    later = Engine.from_config(_config(movie_catalog_path, policy=policy), catalog=small_movies)
    entries = []
    for i in range(60):
        a = live.search(small_movies.titles[i % 20], ts=float(i))
        later.events.append(a)  # the same decision, served by another worker
        fb = Feedback.clicks(a.event_id, list(a.page_ids[:1]) if i % 3 else [], ts=i + 0.5)
        live.feedback(fb)
        rec = later.learner.record(fb)
        entries.append(rec.entry)
        if i % 7 == 6:  # the learner catches up in batches, as the service's does
            for entry in entries:
                later.learner.apply_journal(entry)
            entries = []
    for entry in entries:
        later.learner.apply_journal(entry)
    for k, v in _policy_state(live).items():
        np.testing.assert_array_equal(v, _policy_state(later)[k])
    assert live.strategies["memory"].counts() == later.strategies["memory"].counts()
    assert live.ranker.is_fitted and later.ranker.is_fitted
    assert live.learner.clock == later.learner.clock
    live.close()
    later.close()


def test_a_retrained_ranker_is_a_new_object_and_the_old_one_is_untouched(movie_catalog_path, small_movies):
    engine = Engine.from_config(_config(movie_catalog_path, ranker={"retrain_every": 0}), catalog=small_movies)
    for i in range(30):
        d = engine.search(small_movies.titles[i], ts=float(i))
        engine.feedback(Feedback.clicks(d.event_id, list(d.page_ids[:1]), ts=i + 0.5))
    old = engine.ranker
    X = engine.search(small_movies.titles[0], ts=99.0).features
    before = old.score(X)
    assert engine.learner.retrain_ranker()
    assert engine.ranker is not old and engine.ranker.is_fitted
    # the model that served (and may still be scoring a request) did not change under it
    assert not old.is_fitted and old.version_ == "prior-rrf"
    np.testing.assert_array_equal(old.score(X), before)
    d = engine.search(small_movies.titles[1], ts=100.0)
    assert d.model_versions["ranker"] == engine.ranker.version_
    engine.close()


def test_feedback_for_a_decision_of_another_engine_is_refused_and_not_stored(movie_catalog_path, small_movies,
                                                                             tmp_path):
    events = str(tmp_path / "events.sqlite")
    old = Engine.from_config(_config(movie_catalog_path, store={"events_path": events}), catalog=small_movies)
    d = old.search("alien", ts=1.0)
    old.close()
    # the engine was replaced by one with another context size (e.g. after /admin/reload)
    new = Engine.from_config(_config(movie_catalog_path, store={"events_path": events},
                                     context_features=["bias", "n_tokens"]), catalog=small_movies)
    with pytest.raises(IncompatibleEventError, match=r"decided with 11 context features; this engine's "
                                                     r"policy uses 2 \(the engine was replaced since\)"):
        new.feedback(Feedback.clicks(d.event_id, list(d.page_ids[:1]), ts=2.0))
    assert new.events.counts()["feedback"] == 0 and new.events.journal_head() == 0
    new.close()


def test_a_factored_policy_whose_menu_has_a_strategy_always_on_learns_bandit_feedback(movie_catalog_path, small_movies):
    """Plan rewards teach the factored policy's (strategy, depth) models only through the menu's
    single-strategy plans. With BM25 always on (no depth 0) the menu has no memory-only plan:
    feedback used to raise ConfigError under full-information learning (then the default), in the middle
    of a run. Now the learner teaches such a policy bandit (per-strategy) feedback."""
    over = {"incumbent": {"gate_plans": False, "gate_ranking": False},
            "strategies": [{"name": "bm25", "depths": [10, 50]}, {"name": "memory", "depths": [0, 10]}],
            "policy": {"type": "factored", "params": {"epsilon": 0.2}, "budget": 100}}
    engine = Engine.from_config(_config(movie_catalog_path, **over), catalog=small_movies)
    assert not engine.policy.learns_plan_rewards
    before = _policy_state(engine)
    for i in range(6):
        d = engine.search(small_movies.titles[i % 3], ts=float(i))
        res = engine.feedback(Feedback.clicks(d.event_id, list(d.page_ids[:1]), ts=i + 0.5))
        assert res.policy_updated
    after = _policy_state(engine)
    assert any(not np.allclose(before[k], after[k]) for k in before)
    engine.close()
    with_single = {**over, "strategies": [{"name": "bm25", "depths": [0, 10, 50]}, {"name": "memory", "depths": [0, 10]}]}
    engine = Engine.from_config(_config(movie_catalog_path, **with_single), catalog=small_movies)
    assert engine.policy.learns_plan_rewards
    engine.close()


def _with_learning(cfg: EngineConfig, mode: str) -> EngineConfig:
    """``cfg`` with ``policy.learning = mode``."""
    return cfg.model_copy(update={"policy": cfg.policy.model_copy(update={"learning": mode})})


def test_full_information_teaches_every_plan_the_reward_it_would_have_earned(movie_catalog_path, small_movies):
    """``policy.learning = "full_information"``: each feedback updates the policy with the reward
    every menu plan's page would have earned on the same clicks (what ``warm_start`` learns);
    ``"bandit"``: only the chosen plan's. The logged propensities are the policy's either way."""
    from ltrr.offline.outcomes import plan_page_outcomes
    from ltrr.types import QueryBatch

    over = {"incumbent": {"gate_plans": False, "gate_ranking": False}}
    full = Engine.from_config(_with_learning(_config(movie_catalog_path, **over), "full_information"),
                              catalog=small_movies)
    bandit = Engine.from_config(_with_learning(_config(movie_catalog_path, **over), "bandit"), catalog=small_movies)
    mirror = Engine.from_config(_config(movie_catalog_path, **over), catalog=small_movies)
    for i in range(12):
        query = small_movies.titles[i % 5]
        d = full.search(query, ts=float(i))
        b = bandit.search(query, ts=float(i))
        for e, dec in ((full, d), (bandit, b)):  # exact propensities: the policy's own probability
            assert dec.plan.propensity == pytest.approx(e.policy.probabilities(dec.x)[dec.plan.action])
        clicked = list(d.page_ids[:2]) if i % 4 else []
        rows = small_movies.rows_of(clicked)
        expected = plan_page_outcomes(full, QueryBatch((query,)), rows)
        assert expected.shape == (full.policy.menu.n_actions,)
        if clicked:  # the plans' pages differ: some plans lose the clicked items or their places
            assert np.ptp(expected) > 0
        res = full.feedback(Feedback.clicks(d.event_id, clicked, ts=i + 0.5))
        assert res.policy_updated
        bandit.feedback(Feedback.clicks(b.event_id, list(b.page_ids[:2]) if i % 4 else [], ts=i + 0.5))
        mirror.policy.warm_start(d.x[None, :], expected[None, :])
        mirror.strategies["memory"].observe(query, d.page, rows, i + 0.5)
    for k, v in _policy_state(full).items():
        np.testing.assert_allclose(v, _policy_state(mirror)[k])
    # bandit feedback leaves the models of plans never chosen at their prior
    counts_full = full.policy._state_arrays()
    counts_bandit = bandit.policy._state_arrays()
    assert any(not np.allclose(counts_full[k], counts_bandit[k]) for k in counts_full)
    for e in (full, bandit, mirror):
        e.close()


def test_served_subplans_teach_only_the_plans_the_served_plan_contains(movie_catalog_path, small_movies):
    """``policy.learning = "served_subplans"``: each feedback teaches the full-information reward
    to the plans at most as deep as the served one in every strategy, and nothing to the
    others (their pages would hold items nobody saw)."""
    from ltrr.offline.outcomes import plan_page_outcomes
    from ltrr.types import QueryBatch

    over = {"incumbent": {"gate_plans": False, "gate_ranking": False}}
    sub = Engine.from_config(_with_learning(_config(movie_catalog_path, **over), "served_subplans"),
                             catalog=small_movies)
    mirror = Engine.from_config(_config(movie_catalog_path, **over), catalog=small_movies)
    plans = sub.policy.menu.plans
    partial = 0
    for i in range(12):
        query = small_movies.titles[i % 5]
        d = sub.search(query, ts=float(i))
        clicked = list(d.page_ids[:1]) if i % 3 else []
        rows = small_movies.rows_of(clicked)
        expected = plan_page_outcomes(sub, QueryBatch((query,)), rows)
        observed = (plans <= np.asarray(d.plan.depths)[None, :]).all(axis=1)
        assert observed[d.plan.action]
        partial += int(not observed.all())
        sub.feedback(Feedback.clicks(d.event_id, clicked, ts=i + 0.5))
        mirror.policy.warm_start(d.x[None, :], expected[None, :], observed=observed[None, :])
        mirror.strategies["memory"].observe(query, d.page, rows, i + 0.5)
    assert partial > 0  # some served plans left deeper plans untaught
    for k, v in _policy_state(sub).items():
        np.testing.assert_allclose(v, _policy_state(mirror)[k])
    for e in (sub, mirror):
        e.close()


def test_ranker_plan_pages_value_the_served_sub_plans_by_the_learned_rankers_pages(movie_catalog_path, small_movies):
    """``policy.plan_pages = "ranker"``: once the learned ranker ranks the pages, each sub-plan of
    the served plan is valued by the page that ranker would have shown for it (the served plan's
    own value is exactly the served page's click gain minus its cost; under "rrf" it is RRF's
    page's); a page RRF ranked is valued by RRF as before."""
    from ltrr.offline.outcomes import plan_page_outcomes
    from ltrr.reward import page_gain, plan_cost
    from ltrr.types import QueryBatch
    from simulators.click_models import PositionBasedClickModel
    from simulators.environment import run_session
    from simulators.movies import MovieQueryGenerator

    over = {"incumbent": {"gate_plans": False, "gate_ranking": False}, "policy": {
        "type": "epsilon_greedy", "params": {"epsilon": 0.2}, "budget": 100, "plan_pages": "ranker"}}
    engine = Engine.from_config(_config(movie_catalog_path, **over), catalog=small_movies)
    stream = MovieQueryGenerator(small_movies, seed=4).stream(160, 40, seed=4)
    run_session(engine, stream[:120], PositionBasedClickModel(preset="navigational"), seed=4)
    assert engine.ranker.is_fitted
    learner, spec, plans = engine.learner, engine.learner.reward, engine.policy.menu.plans
    differs = checked = 0
    for i, q in enumerate(stream[120:]):
        d = engine.search(q.text, ts=1000.0 + i)
        if len(d.page) < 3:
            continue
        checked += 1
        clicked = d.page[[0, 2]]
        logged = engine.events.get(d.event_id)
        assert logged is not None
        got = learner.full_information(q.text, clicked, d.plan.depths, logged)
        assert got is not None
        rewards, within = got
        assert within is not None and within[d.plan.action]
        cost = plan_cost(spec, plans, learner.plan_latency())
        assert rewards[d.plan.action] == pytest.approx(page_gain(spec, d.page, clicked) - cost[d.plan.action])
        assert (rewards[~within] == 0).all()
        rrf = plan_page_outcomes(engine, QueryBatch((q.text,)), clicked, learner.plan_latency())
        differs += int(not np.allclose(rrf[within], rewards[within]))
        # the same search ranked by RRF (as before the ranker serves) is valued by RRF
        baseline = dict(logged.model_versions, ranker="fusion:rrf")
        got_rrf = learner.full_information(q.text, clicked, d.plan.depths, replace(logged, model_versions=baseline))
        assert got_rrf is not None
        np.testing.assert_allclose(got_rrf[0], rrf)
    assert checked >= 15 and differs > 0  # the learned ranker's pages are not RRF's
    engine.close()
