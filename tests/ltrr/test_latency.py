"""Latency-aware plans: per-strategy latency measured online (decayed histograms), the reward
charging each strategy for its milliseconds, and a p99 budget that keeps slow plans out."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ltrr import registry
from ltrr.catalog import Catalog
from ltrr.config import parse_config
from ltrr.contracts.strategy import CandidateGenerator
from ltrr.engine import Engine
from ltrr.latency import LatencyTracker
from ltrr.params import Params
from ltrr.reward import RewardSpec, decision_rewards
from ltrr.types import Feedback, QueryBatch, RetrievalResult

FIELDS = ["title", "directors", "genres"]


def test_tracker_mean_and_p99_from_decayed_measurements():
    t = LatencyTracker(["a", "b"], [[0, 10, 50], [0, 20]], hints=[lambda k: 1.0 + k / 100, lambda k: 7.0])
    mean, p99 = t.strategy_ms([10, 20])
    np.testing.assert_allclose(mean, [1.1, 7.0])  # nothing measured yet: the declared hints
    rng = np.random.default_rng(0)
    for v in rng.uniform(2.0, 4.0, size=500):
        t.observe(0, 10, float(v))
    for _ in range(5):
        t.observe(0, 10, 40.0)  # 1% slow calls
    mean, p99 = t.strategy_ms([10, 0])
    assert mean[0] == pytest.approx(3.0 + 0.01 * 37, rel=0.08) and mean[1] == 0.0
    assert 3.5 <= p99[0] <= 45.0
    plan_mean, plan_p99 = t.plan_ms(np.array([[10, 20], [50, 0], [0, 20]]))
    np.testing.assert_allclose(plan_mean, [mean[0] + 7.0, 1.5, 7.0], rtol=1e-9)
    assert plan_p99[0] == pytest.approx(p99[0] + 7.0)
    # decay: a new regime replaces the old one
    for _ in range(3000):
        t.observe(0, 10, 10.0)
    assert t.strategy_ms([10, 0])[0][0] == pytest.approx(10.0, rel=0.1)
    back = LatencyTracker(["a", "b"], [[0, 10, 50], [0, 20]])
    back.restore(t.to_dict())
    np.testing.assert_allclose(back.strategy_ms([10, 0])[0], t.strategy_ms([10, 0])[0])


def test_each_strategy_pays_for_its_own_milliseconds():
    spec = RewardSpec("any_click", "split", cost_per_candidate=0.001, latency_weight=0.002)
    found = np.array([[True, False], [False, True]])
    reward, per = decision_rewards(spec, found, np.array([True, False]), (10, 20), None, np.array([5.0, 30.0]))
    assert reward == pytest.approx(1.0 - 0.001 * 30 - 0.002 * 35)
    np.testing.assert_allclose(per, [1.0 - 0.01 - 0.01, 0.0 - 0.02 - 0.06])


class SlowParams(Params):
    sleep_ms: float = 25.0


class Slow(CandidateGenerator):
    """A strategy that takes ``sleep_ms`` per call (a stand-in for a slow remote generator)."""

    type_name = "test_slow"
    Params = SlowParams

    def _fit(self, catalog: Catalog) -> None:
        self.n = len(catalog)

    def _retrieve(self, queries: QueryBatch, k: int) -> RetrievalResult:
        time.sleep(self.params.sleep_ms / 1e3)
        ids = np.tile(np.arange(min(k, self.n)), (len(queries), 1))
        out = RetrievalResult.empty(len(queries), k)
        out.ids[:, : ids.shape[1]] = ids
        out.scores[:, : ids.shape[1]] = 1.0 / (1.0 + np.arange(ids.shape[1]))
        return out

    def cost_ms(self, k: int) -> float:
        return 1.0  # it claims to be fast; the measurements tell otherwise

    def _save(self, directory: Path) -> None:
        (directory / "n.txt").write_text(str(self.n))

    def _load(self, directory: Path, manifest: dict[str, Any]) -> None:
        self.n = int((directory / "n.txt").read_text())


registry.register("strategy", "test_slow", Slow)


def test_a_p99_budget_keeps_plans_with_a_measured_slow_strategy_out(movie_catalog_path, small_movies):
    cfg = parse_config({
        "seed": 1, "catalog": {"path": str(movie_catalog_path), "text_fields": FIELDS, "limit": 800},
        "strategies": [{"name": "bm25", "depths": [10]}, {"name": "slow", "type": "test_slow", "depths": [0, 10]}],
        "policy": {"type": "epsilon_greedy", "params": {"epsilon": 1.0}, "budget": 100, "p99_budget_ms": 15.0},
        "incumbent": {"gate_plans": False, "gate_ranking": False}, "ranker": {"retrain_every": 0},
    }, "test")
    engine = Engine.from_config(cfg, catalog=small_movies)
    slow_used = []
    for i in range(60):
        d = engine.search(small_movies.titles[i], ts=float(i))
        slow_used.append(d.plan.depth("slow") > 0)
        assert d.strategy_ms.shape == (2,)
        if slow_used[-1]:
            assert d.strategy_ms[1] >= 20.0  # measured, not the declared 1 ms
        engine.feedback(Feedback.clicks(d.event_id, list(d.page_ids[:1]), ts=i + 0.5))
    # the declared cost let it in at first; once measured, its p99 breaks the 15 ms budget
    first = slow_used.index(True)
    assert first < 10 and not any(slow_used[first + 1:])
    allowed = engine.plans_within_budget(engine.policy)
    assert allowed is not None and allowed.tolist() == [d == 0 for d in engine.policy.menu.plans[:, 1]]
    assert engine.search("love", ts=99.0).plan.propensity == 1.0  # the only plan left
    engine.close()
