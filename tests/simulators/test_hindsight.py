"""Hindsight plan valuation: the page recovered for every plan from one max-depth decision equals
the page the engine builds when it retrieves that plan for real, with the same ranker and memory."""

from __future__ import annotations

import numpy as np
import pytest

from ltrr.config import parse_config
from ltrr.engine import Engine
from ltrr.ranking.plan_pages import RankerPlanPages
from ltrr.types import Candidates, QueryBatch
from simulators.click_models import PositionBasedClickModel
from simulators.environment import run_session
from simulators.hindsight import (
    HindsightPlanValuer,
    HindsightRecorder,
    expected_reward,
    regret_curve_summary,
    value_pages,
    valued_plans,
)
from simulators.movies import MovieQueryGenerator

#: pages ordered by the ranker from the first round (the table recomputes ranker-ordered pages),
#: repeatable rewards (declared latency)
UNGATED = {"incumbent": {"gate_ranking": False, "gate_plans": False}}
FIELDS = ["title", "directors", "cast", "genres", "year"]


@pytest.fixture(scope="module")
def trained_engine(movie_catalog_path, small_movies):
    """Every strategy at its maximum depth (fixed policy), a click memory and a ranker trained
    online from 300 simulated sessions."""
    cfg = parse_config({
        "seed": 5,
        "catalog": {"path": str(movie_catalog_path), "text_fields": FIELDS, "limit": 800},
        "strategies": [{"name": "bm25", "depths": [0, 5, 30]},
                       {"name": "titles", "type": "bm25", "depths": [0, 3, 20],
                        "params": {"text_fields": ["title"]}},
                       {"name": "memory", "depths": [0, 10]}],
        "policy": {"type": "fixed", "budget": 60},
        "ranker": {"retrain_every": 50, "params": {"n_estimators": 25, "min_data_in_leaf": 5}},
        **UNGATED,
    }, "test")
    engine = Engine.from_config(cfg, catalog=small_movies)
    gen = MovieQueryGenerator(small_movies, seed=2)
    stream = gen.stream(360, 60, seed=2)
    run_session(engine, stream[:300], PositionBasedClickModel(preset="navigational"), seed=2)
    yield engine, stream[300:]
    engine.close()


def real_page(engine: Engine, query: str, depths, k: int) -> np.ndarray:
    """What the engine shows for ``query`` under ``depths``, built the engine's way."""
    batch = QueryBatch((query,))
    rows = []
    for name, d in zip(engine.policy.menu.strategies, depths, strict=True):
        if d > 0:
            rows.append(engine.strategies[name].retrieve(batch, int(d)).row(0))
        else:
            rows.append((np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)))
    cands = Candidates.union(engine.policy.menu.strategies, rows, tuple(int(d) for d in depths))
    scores = engine.ranker.score(engine.features.build(batch, cands))
    return cands.items[np.lexsort((np.arange(len(cands)), -scores))[:k]]


def test_every_plans_page_equals_the_engines_page_for_that_plan(trained_engine):
    engine, held_out = trained_engine
    assert engine.ranker.is_fitted
    menu = engine.policy.menu
    valuer = RankerPlanPages(menu.plans, menu.strategies, engine.features.schema, k=10)
    checked = memory_used = 0
    for q in held_out[:25]:
        d = engine.search(q.text, {}, k=10)
        got = valuer(d, engine.ranker)
        assert got.pages.shape == (menu.n_actions, 10)
        for a, depths in enumerate(menu.plans):
            want = real_page(engine, q.text, depths, 10)
            np.testing.assert_array_equal(got.pages[a, : want.size], want)
            assert np.all(got.pages[a, want.size:] == -1)
            checked += 1
        full = menu.action_of(np.array(d.plan.depths))
        np.testing.assert_array_equal(got.pages[full, : d.page.size], d.page)
        memory_used += int(np.isfinite(d.candidates.ranks[:, menu.strategies.index("memory")]).any())
    assert checked == 25 * menu.n_actions
    assert memory_used > 0  # the click memory contributed candidates, so its masking was exercised


def test_a_plan_deeper_than_the_decision_is_refused(trained_engine):
    engine, held_out = trained_engine
    menu = engine.policy.menu
    valuer = RankerPlanPages(np.array([[60, 0, 0]]), menu.strategies, engine.features.schema)
    d = engine.search(held_out[0].text, {})
    with pytest.raises(ValueError, match="drew bm25 at depth 30 but a plan needs 60"):
        valuer(d, engine.ranker)


def test_value_pages_is_the_expected_click_reward_and_true_ndcg():
    pbm = PositionBasedClickModel(preset="navigational")
    pages = np.array([[7, 3, -1], [3, 7, 9], [-1, -1, -1]])
    relevant = {3: 2.0, 7: 1.0}
    value, ndcg = value_pages(pages, relevant, pbm, kind="any_click", cost=np.array([0.0, 0.01, 0.0]))
    probs = pbm.click_probabilities(np.array([[1.0, 2.0, -1.0], [2.0, 1.0, 0.0]]))
    p0 = 1 - (1 - probs[0, 0]) * (1 - probs[0, 1])
    p1 = 1 - np.prod(1 - probs[1])
    np.testing.assert_allclose(value, [p0, p1 - 0.01, 0.0])
    assert ndcg[1] == pytest.approx(1.0)
    ideal = 3 + 1 / np.log2(3)
    assert ndcg[0] == pytest.approx((1 + 3 / np.log2(3)) / ideal)
    assert ndcg[2] == 0.0


def test_click_dcg_reward_weights_positions():
    pbm = PositionBasedClickModel(preset="navigational")
    grades = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    value = expected_reward(grades, pbm, "click_dcg", 0.0)
    probs = pbm.click_probabilities(grades)
    w = 1 / np.log2(np.arange(2, 5))
    np.testing.assert_allclose(value, probs @ w / w.sum())
    assert value[0] > value[1]
    with pytest.raises(ValueError, match="Unknown reward kind 'ctr'"):
        expected_reward(grades, pbm, "ctr", 0.0)


def test_valuer_charges_each_plan_its_depth(trained_engine):
    engine, held_out = trained_engine
    menu = engine.policy.menu
    pbm = PositionBasedClickModel(preset="navigational")
    valuer = HindsightPlanValuer(menu.plans, menu.strategies, engine.features.schema, pbm,
                                 kind="click_dcg", cost_per_candidate=0.001)
    q = held_out[1]
    pages = valuer.pages(engine.search(q.text, {}), engine.ranker)
    value, ndcg = valuer.value(pages.pages, q.relevant)
    free, _ = value_pages(pages.pages, q.relevant, pbm, kind="click_dcg", cost=0.0)
    np.testing.assert_allclose(free - value, 0.001 * menu.plans.sum(axis=1))
    assert np.all((ndcg >= 0) & (ndcg <= 1))


def test_recorded_table_matches_the_recorded_run(movie_catalog_path, small_movies):
    """On a recorded max-depth pass, the table's column for the all-max plan is the run itself
    (same pages, so the same true nDCG and candidate counts), and regrets are computed on it."""
    cfg = parse_config({
        "seed": 1,
        "catalog": {"path": str(movie_catalog_path), "text_fields": FIELDS, "limit": 800},
        "strategies": [{"name": "bm25", "depths": [5, 30]}, {"name": "memory", "depths": [0, 10]}],
        "policy": {"type": "fixed", "budget": 35},
        "ranker": {"retrain_every": 40, "params": {"n_estimators": 15, "min_data_in_leaf": 5}},
        **UNGATED,
    }, "test")
    engine = Engine.from_config(cfg, catalog=small_movies)
    menu = engine.policy.menu
    plans = valued_plans(menu)
    # the menu (3 plans within budget 35) first, then all-max (30, 10) and memory alone (0, 10)
    assert plans[: menu.n_actions].tolist() == menu.plans.tolist()
    assert plans[menu.n_actions:].tolist() == [[30, 10], [0, 10]]
    stream = MovieQueryGenerator(small_movies, seed=4).stream(160, 40, seed=4)
    pbm = PositionBasedClickModel(preset="navigational")
    valuer = HindsightPlanValuer(plans, menu.strategies, engine.features.schema, pbm,
                                 kind="any_click", cost_per_candidate=0.0)
    recorder = HindsightRecorder(engine, [q.relevant for q in stream], valuer)
    run = run_session(engine, stream, pbm, seed=4, observer=recorder)
    engine.close()
    table = recorder.table()
    assert table.value.shape == (160, plans.shape[0])
    a_max = table.actions_of(np.array([[30, 10]]))[0]
    np.testing.assert_allclose(table.ndcg[:, a_max], run.ndcg, equal_nan=True)
    np.testing.assert_array_equal(table.n_candidates[:, a_max], run.n_candidates)
    qtypes = [q.qtype for q in stream]
    own = table.regret(run.depths, qtypes, menu.n_actions)
    best = table.best_fixed(menu.n_actions)
    want = float(np.sum(table.value[:, best] - table.value[:, a_max]))
    assert own["vs_best_fixed"]["total"] == pytest.approx(want, abs=0.01)
    assert own["vs_per_round_best_plan"]["total"] >= own["vs_best_plan_per_query_type"]["total"] - 1e-9
    with pytest.raises(ValueError, match="160 rounds chose plans this table does not value"):
        table.regret(np.tile([[7, 7]], (160, 1)), qtypes)


def test_regret_curve_summary_tells_sublinear_from_linear():
    t = np.arange(1, 10001, dtype=np.float64)
    sub = regret_curve_summary(np.sqrt(t))
    lin = regret_curve_summary(0.5 * t)
    assert sub["second_half_slope_below_first"] and sub["slope_ratio"] == pytest.approx(0.414, abs=0.01)
    assert not lin["second_half_slope_below_first"] and lin["slope_ratio"] == pytest.approx(1.0)
    assert lin["at_quarters"] == [1250.0, 2500.0, 3750.0, 5000.0]
    negative = regret_curve_summary(-t)
    assert negative["slope_ratio"] is None and not negative["second_half_slope_below_first"]


def test_recording_a_learning_run_does_not_change_it_and_values_its_own_choices(movie_catalog_path, small_movies):
    """A learned policy draws less than the valued plans need, so the recorder makes a shadow
    max-depth retrieval per request; the run is bit-identical to an unrecorded one, and the
    table's entry for the plan actually chosen is the page actually shown, on every round."""
    cfg = parse_config({
        "seed": 2,
        "catalog": {"path": str(movie_catalog_path), "text_fields": FIELDS, "limit": 800},
        "strategies": [{"name": "bm25", "depths": [5, 30]},
                       {"name": "titles", "type": "bm25", "depths": [0, 10], "params": {"text_fields": ["title"]}},
                       {"name": "memory", "depths": [0, 10]}],
        "policy": {"type": "epsilon_greedy", "params": {"epsilon": 0.3}, "budget": 50, "latency_source": "declared"},
        "ranker": {"retrain_every": 40, "params": {"n_estimators": 15, "min_data_in_leaf": 5}},
        **UNGATED,
    }, "test")
    stream = MovieQueryGenerator(small_movies, seed=6).stream(200, 50, seed=6)
    pbm = PositionBasedClickModel(preset="navigational")
    runs, tables = [], []
    for record in (False, True):
        engine = Engine.from_config(cfg, catalog=small_movies)
        recorder = None
        if record:
            menu = engine.policy.menu
            valuer = HindsightPlanValuer(valued_plans(menu), menu.strategies, engine.features.schema, pbm,
                                         kind="any_click", cost_per_candidate=0.0)
            recorder = HindsightRecorder(engine, [q.relevant for q in stream], valuer)
        runs.append(run_session(engine, stream, pbm, seed=6, observer=recorder))
        if recorder is not None:
            tables.append(recorder.table())
            assert 0 < recorder.n_shadow < 200  # some rounds drew every strategy at its maximum
        engine.close()
    plain, recorded = runs
    np.testing.assert_array_equal(recorded.depths, plain.depths)
    np.testing.assert_array_equal(recorded.clicks, plain.clicks)
    np.testing.assert_array_equal(recorded.ndcg, plain.ndcg)
    table = tables[0]
    chosen = table.actions_of(recorded.depths)
    assert (chosen >= 0).all()
    t = np.arange(200)
    np.testing.assert_allclose(table.ndcg[t, chosen], recorded.ndcg, equal_nan=True)
    np.testing.assert_array_equal(table.n_candidates[t, chosen], recorded.n_candidates)
