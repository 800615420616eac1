"""The safe incumbent: RRF and the baseline plan serve until the learned ranker wins an
interleaving test and the learned policy keeps the page gain within alpha of the baseline's."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ltrr.config import IncumbentConfig, parse_config
from ltrr.engine import Engine
from ltrr.incumbent import Incumbent, PlanGate, RankerGate, SequentialTest, middle_depth
from ltrr.store.engine_dir import load_state, save_state
from ltrr.types import Feedback

FIELDS = ["title", "directors", "cast", "genres", "year"]


def test_sequential_test_decides_at_walds_bounds():
    t = SequentialTest(min_effect=0.1, confidence=0.95)
    step_win, step_loss = math.log(0.6 / 0.5), math.log(0.4 / 0.5)
    bound = math.log(0.95 / 0.05)
    wins_needed = math.ceil(bound / step_win)  # 17 straight wins accept "better"
    t.wins = wins_needed - 1
    assert t.decision() is None
    t.wins += 1
    assert t.decision() == "better"
    t = SequentialTest(0.1, 0.95, wins=0, losses=math.ceil(bound / -step_loss))
    assert t.decision() == "not_better"
    t = SequentialTest(0.1, 0.95, wins=50, losses=50)  # a tie keeps drifting towards H0
    assert t.llr == pytest.approx(50 * (step_win + step_loss))


def test_ranker_gate_promotes_then_demotes_and_restarts_its_test():
    gate = RankerGate(IncumbentConfig(min_effect=0.1, confidence=0.95))
    assert gate.serving == "baseline"
    assert gate.observe(1, 1) == (None, {})  # a tie is no evidence
    switch = None
    for _ in range(17):
        switch, evidence = gate.observe(2, 0)
    assert switch == "promote" and evidence["wins"] == 17 and evidence["verdict"] == "better"
    assert gate.serving == "learned" and gate.test.wins == 0
    for _ in range(14):
        switch, _ = gate.observe(0, 1)
    assert switch == "demote" and gate.serving == "baseline"


def test_ranker_gate_shares_of_interleaved_searches():
    rng = np.random.default_rng(0)
    gate = RankerGate(IncumbentConfig(interleave_share=0.5, monitor_share=0.1))
    assert {gate.mode(False, rng) for _ in range(50)} == {"baseline"}  # nothing learned yet
    modes = [gate.mode(True, rng) for _ in range(4000)]
    assert modes.count("interleaved") / 4000 == pytest.approx(0.5, abs=0.03)
    gate.serving = "learned"
    modes = [gate.mode(True, rng) for _ in range(4000)]
    assert modes.count("interleaved") / 4000 == pytest.approx(0.1, abs=0.02)
    assert set(modes) == {"learned", "interleaved"}
    off = RankerGate(IncumbentConfig(gate_ranking=False))
    assert off.mode(False, rng) == "learned"


def test_plan_gate_keeps_the_gain_within_alpha_of_the_baseline():
    gate = PlanGate(IncumbentConfig(alpha=0.1, gain_half_life=0.0, min_baseline_rounds=10))
    for _ in range(9):
        gate.served()
        gate.observe(True, 0.5)
    assert not gate.learned_allowed()  # too few baseline rounds
    gate.served()
    gate.observe(True, 0.5)
    # 10 rounds earned 5.0; the next round (worst case 0) needs 0.9 * 11 * 0.5 = 4.95
    assert gate.learned_allowed()
    gate.served()
    gate.observe(False, 0.0)  # a learned round that earned nothing
    assert not gate.learned_allowed()  # 5.0 < 0.9 * 12 * 0.5 = 5.4
    # each baseline round adds 0.5 earned against 0.45 owed: the 0.4 deficit takes 8 rounds
    recovered = 0
    while not gate.learned_allowed():
        gate.served()
        gate.observe(True, 0.5)
        recovered += 1
    assert recovered == 8


def test_plan_gate_takes_over_from_the_baseline_only_with_a_margin_of_evidence():
    cfg = IncumbentConfig(alpha=0.1, gain_half_life=0.0, min_baseline_rounds=10, resume_rounds=2.0)
    gate = PlanGate(cfg)
    for _ in range(10):
        gate.served()
        gate.observe(True, 0.5)
    # slack = 5.0 - 0.9 * 11 * 0.5 = 0.05: enough to keep serving and for a first promotion ...
    assert gate.slack() == pytest.approx(0.05)
    assert gate.learned_allowed(serving_learned=True) and gate.learned_allowed(serving_learned=False)
    # ... but not to take over again once the baseline plan took over
    gate.demoted = True
    assert not gate.learned_allowed(serving_learned=False)
    # each baseline round adds 0.05 of slack: taking over needs 2 rounds of gain (1.0)
    extra = 0
    while not gate.learned_allowed(serving_learned=False):
        gate.served()
        gate.observe(True, 0.5)
        extra += 1
    assert extra == 19  # 0.05 * (1 + 19) = 1.0


def _run_gate(inc: Incumbent, rounds: int, learned_gain: float, baseline_gain: float = 0.5) -> Incumbent:
    """``rounds`` searches through the plan gate, each side earning a constant gain."""
    for t in range(rounds):
        inc.plans.served()
        learned = inc.plans_allowed(float(t))
        inc.plans.observe(not learned, learned_gain if learned else baseline_gain)
    return inc


def test_incumbent_does_not_flap_when_the_learned_gain_hovers_at_the_bound():
    # the learned policy earns 0.85 of the baseline's 0.5: it spends the slack, then waits
    inc = _run_gate(Incumbent(IncumbentConfig(alpha=0.1, gain_half_life=0.0, min_baseline_rounds=10)), 2000, 0.425)
    flips = len(inc.switches)
    no_margin = _run_gate(Incumbent(IncumbentConfig(alpha=0.1, gain_half_life=0.0, min_baseline_rounds=10,
                                                    resume_rounds=0.0)), 2000, 0.425)
    assert 2 <= flips <= 60 < len(no_margin.switches)
    assert all(sw["component"] == "policy" for sw in inc.switches)


def test_plan_gate_warm_up_does_not_expire_while_the_learned_policy_serves():
    # half-life 100 rounds: the baseline's decayed count falls under min_baseline_rounds (50)
    # after ~15 learned rounds; a learned policy earning more than the baseline keeps serving
    inc = _run_gate(Incumbent(IncumbentConfig(alpha=0.1, gain_half_life=100.0, min_baseline_rounds=50)), 3000, 0.6)
    assert inc.plans.n_baseline < 50 <= inc.plans.baseline_rounds == 50
    assert [sw["action"] for sw in inc.switches] == ["promote"]
    state = inc.to_dict()
    restored = Incumbent(IncumbentConfig(alpha=0.1, gain_half_life=100.0, min_baseline_rounds=50))
    restored.restore(state)
    assert restored.plans.baseline_rounds == 50 and restored.plans.learned_allowed()


def _run_monitored_gate(inc: Incumbent, rounds: int, learned_gain: float, baseline_gain) -> list[bool]:
    """Searches through the plan gate as the engine runs them (the baseline plan also serves the
    monitoring rounds); ``baseline_gain(t)`` is what it earns at round ``t``. Returns whether
    the learned policy chose each plan."""
    chose = []
    for t in range(rounds):
        inc.plans.served()
        learned = inc.plans_allowed(float(t)) and not inc.monitors_baseline_plan()
        inc.plans.observe(not learned, learned_gain if learned else baseline_gain(t))
        inc.rounds += 1
        chose.append(learned)
    return chose


def test_plan_gate_demotes_learned_plans_that_fall_behind_a_baseline_that_improves():
    """The baseline plan earns 0.4 in its first rounds (no ranker yet) and 0.6 once the ranker
    has learned; the learned plans earn 0.5 throughout. Estimated from its first rounds only, the
    baseline's mean stays 0.4 and the learned plans are never demoted; served every 20th round
    (``plan_monitor_every``), its estimate follows, and the gate demotes them."""
    def improving(t: int) -> float:
        return 0.4 if t < 300 else 0.6

    frozen = Incumbent(IncumbentConfig(plan_monitor_every=0))
    chose = _run_monitored_gate(frozen, 4000, 0.5, improving)
    assert [sw["action"] for sw in frozen.switches] == ["promote"] and all(chose[100:])
    assert frozen.plans.baseline_mean() == pytest.approx(0.4)

    inc = Incumbent(IncumbentConfig(plan_monitor_every=20))
    chose = _run_monitored_gate(inc, 4000, 0.5, improving)
    assert inc.plans.baseline_mean() > 0.58
    assert [sw["action"] for sw in inc.switches][:2] == ["promote", "demote"]
    # monitoring rounds while the learned policy serves: exactly every 20th
    start = inc.switches[0]["round"]
    assert 50 <= start < 100
    assert not any(chose[t] for t in range(start, 300) if t % 20 == 19)
    assert all(chose[t] for t in range(start, 300) if t % 20 != 19)
    # afterwards the baseline serves most rounds: the learned plans only spend alpha's slack
    assert np.mean(chose[-1000:]) < 0.35


def test_plan_gate_counts_rounds_without_feedback_as_earning_nothing():
    gate = PlanGate(IncumbentConfig(alpha=0.1, gain_half_life=0.0, min_baseline_rounds=1))
    for _ in range(20):
        gate.served()
        gate.observe(True, 1.0)
    assert gate.learned_allowed()
    for _ in range(2):  # two searches whose feedback has not arrived yet
        gate.served()
    assert gate.pending == 2 and not gate.learned_allowed()  # 20 < 0.9 * 23 = 20.7
    gate.observe(False, 1.0)
    assert gate.pending == 1 and gate.learned_allowed()  # 21 >= 0.9 * 23


def _config(path, **over):
    data = {
        "seed": 4, "catalog": {"path": str(path), "text_fields": FIELDS, "limit": 800},
        "strategies": [{"name": "bm25", "depths": [10, 50]}, {"name": "memory", "depths": [0, 10]}],
        "policy": {"type": "epsilon_greedy", "params": {"epsilon": 0.1}, "budget": 100},
        "ranker": {"retrain_every": 40, "params": {"n_estimators": 30, "min_data_in_leaf": 5}},
        "incumbent": {"min_effect": 0.1, "min_baseline_rounds": 20, "min_holdout_queries": 20},
        "store": {"event_ids": "seeded"},
    }
    data.update(over)
    # the baseline plan these scenarios need: BM25's deeper list holds the popular films the
    # user clicks (the default, each strategy's middle depth, is BM25 10 on this menu)
    data["incumbent"] = {"baseline_plan": {"bm25": 50, "memory": 10}, **data["incumbent"]}
    return parse_config(data, "test")


def _popular_first_user(engine, small_movies, n, start=0):
    """Genre queries; the user clicks the most popular film on the page: RRF of BM25 ignores
    popularity, a ranker learned from these clicks does not."""
    genres = ["drama", "comedy", "thriller", "horror", "romance", "action", "crime", "war"]
    pop = small_movies.popularity
    out = []
    for i in range(start, start + n):
        d = engine.search(genres[i % len(genres)], ts=float(i))
        rows = [int(r) for r in d.page]
        clicks = [small_movies.ids[max(rows, key=lambda r: pop[r])]] if rows else []
        engine.feedback(Feedback.clicks(d.event_id, clicks, ts=i + 0.5))
        out.append(d)
    return out


def test_the_engine_serves_rrf_until_the_learned_ranker_wins_the_interleaving_test(movie_catalog_path,
                                                                                  small_movies, tmp_path):
    engine = Engine.from_config(_config(movie_catalog_path), catalog=small_movies)
    decisions = _popular_first_user(engine, small_movies, 400)
    rankings = [d.model_versions["ranking"] for d in decisions]
    assert rankings[0] == "baseline" and decisions[0].model_versions["ranker"] == "fusion:rrf"
    assert "interleaved" in rankings
    first_interleaved = rankings.index("interleaved")
    assert decisions[first_interleaved].teams is not None and set(decisions[first_interleaved].teams) == {0, 1}
    switches = [s for s in engine.incumbent.switches if s["component"] == "ranker"]
    assert switches and switches[0]["action"] == "promote", engine.incumbent.status()
    promote = switches[0]["evidence"]
    if promote["test"] == "sprt":  # the interleaving test decided first ...
        assert promote["verdict"] == "better" and promote["wins"] > promote["losses"]
    else:  # ... or the off-policy bound on held-out queries
        assert promote["test"] == "counterfactual" and promote["lower"] > 0 and promote["queries"] >= 20
    assert switches[0]["round"] > first_interleaved
    after = [d for d in decisions if d.model_versions["ranking"] == "learned"]
    assert after and all(d.model_versions["ranker"].startswith("lgbm-") for d in after)
    assert engine.incumbent.status()["ranking"] == "learned"
    # the plan gate let the learned policy choose once the baseline plan had its rounds
    sources = [d.model_versions["plan"] for d in decisions]
    assert sources[:20] == ["baseline"] * 20 and "learned" in sources
    assert all(d.plan.propensity == 1.0 and d.plan.policy == "incumbent"
               for d in decisions if d.model_versions["plan"] == "baseline")
    # the state (switch log, evidence, serving ranking) survives a save and a snapshot
    engine.save(tmp_path / "eng")
    back = Engine.load(tmp_path / "eng")
    assert back.incumbent.to_dict() == engine.incumbent.to_dict()
    save_state(engine, tmp_path / "snap")
    fresh = Engine.from_config(_config(movie_catalog_path), catalog=small_movies)
    load_state(fresh, tmp_path / "snap")
    assert fresh.incumbent.status() == engine.incumbent.status()
    for e in (engine, back, fresh):
        e.close()


def test_a_worse_learned_ranker_is_never_promoted(movie_catalog_path, small_movies):
    """Clicks that follow the RRF order exactly: the learned ranker can only tie or lose."""
    engine = Engine.from_config(_config(movie_catalog_path), catalog=small_movies)
    genres = ["drama", "comedy", "thriller", "horror", "romance", "action", "crime", "war"]
    for i in range(300):
        d = engine.search(genres[i % len(genres)], ts=float(i))
        rrf_top = d.candidates.items[int(np.argmin(np.nan_to_num(d.candidates.ranks[:, 0], nan=1e9)))]
        clicks = [small_movies.ids[int(rrf_top)]] if int(rrf_top) in d.page.tolist() else []
        engine.feedback(Feedback.clicks(d.event_id, clicks, ts=i + 0.5))
    assert engine.incumbent.ranker.serving == "baseline"
    assert not [s for s in engine.incumbent.switches if s["component"] == "ranker" and s["action"] == "promote"]
    engine.close()


def test_disabled_gates_serve_the_learned_components_at_once(movie_catalog_path, small_movies):
    cfg = _config(movie_catalog_path, incumbent={"gate_ranking": False, "gate_plans": False})
    engine = Engine.from_config(cfg, catalog=small_movies)
    d = engine.search("drama", ts=0.0)
    assert "ranking" not in d.model_versions and "plan" not in d.model_versions
    assert d.model_versions["ranker"] == "prior-rrf"
    engine.close()


def test_default_baseline_plan_is_every_strategy_at_its_middle_depth():
    assert [middle_depth(o) for o in ([10, 50, 100], [0, 10, 50], [0, 10, 50, 100], [0, 30, 100], [0, 10], [0])] \
        == [50, 10, 50, 30, 10, 0]
    # a longer page asked for: the smallest depth that can fill it, else the largest
    assert [middle_depth([10, 30], at_least=20), middle_depth([10, 30], at_least=50), middle_depth([0], 20)] \
        == [30, 30, 0]


def test_baseline_plan_must_name_known_strategies(movie_catalog_path):
    with pytest.raises(Exception, match="incumbent.baseline_plan names unknown strategy 'dense'; "
                                        "strategies: bm25, memory"):
        _config(movie_catalog_path, incumbent={"baseline_plan": {"dense": 10}})


def test_incumbent_state_round_trips():
    inc = Incumbent(IncumbentConfig())
    inc.ranker.observe(1, 0)
    inc.plans.served()
    inc.plans.observe(True, 0.4)
    inc.record_switch("policy", "promote", 3.0, {"x": 1})
    again = Incumbent(IncumbentConfig())
    again.restore(inc.to_dict())
    assert again.to_dict() == inc.to_dict()


def test_interleaving_alone_promotes_when_the_off_policy_gate_is_off(movie_catalog_path, small_movies):
    engine = Engine.from_config(_config(movie_catalog_path, incumbent={
        "min_effect": 0.1, "min_baseline_rounds": 20, "counterfactual": False}), catalog=small_movies)
    _popular_first_user(engine, small_movies, 400)
    promote = [s for s in engine.incumbent.switches if s["component"] == "ranker"][0]
    assert promote["action"] == "promote" and promote["evidence"]["test"] == "sprt"
    engine.close()
