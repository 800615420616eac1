"""Off-policy comparison of rankings on logged clicks: inverse-propensity DCG differences."""

from __future__ import annotations

import numpy as np
import pytest

from ltrr.ranking.counterfactual import PairedComparison, compare_rankings
from ltrr.store.events import LoggedEvent
from ltrr.types import Candidates, Plan


def _event(i: int, n: int = 5) -> LoggedEvent:
    """Five candidates shown in order 0..4 (page_idx = rows)."""
    cands = Candidates(("a",), np.arange(100 * i, 100 * i + n), np.zeros((n, 1), np.float32),
                       np.arange(1, n + 1, dtype=np.float32)[:, None])
    return LoggedEvent(i, f"e{i}", 0.0, "q", {}, Plan(("a",), (n,)), tuple(f"d{j}" for j in range(n)), {},
                       np.ones(1), cands, np.zeros((n, 1), np.float32), np.arange(n), np.arange(n), True)


def test_a_ranking_that_lifts_the_clicked_item_wins_by_its_ips_dcg_gain():
    exam = np.array([1.0, 0.5, 0.5, 0.25, 0.25])
    events = [(_event(i), {"d3": 1.0}) for i in range(4)]  # the item shown 4th is clicked
    shown_order = lambda ev: -np.arange(5, dtype=float)  # noqa: E731 (as logged)
    lifted = lambda ev: np.array([0.0, -1.0, -2.0, 5.0, -3.0])  # noqa: E731 (clicked item first)
    res = compare_rankings(events, lifted, shown_order, exam, k=10, clip=10.0)
    w = 1 / np.log2(np.arange(2, 12))
    want = (1 / 0.25) * (w[0] - w[3]) / w.sum()
    np.testing.assert_allclose(res.differences, [want] * 4)
    assert res.bounds(0.95)[0] == pytest.approx(want)  # no spread: the bound is the mean
    same = compare_rankings(events, shown_order, shown_order, exam)
    assert same.mean == 0.0 and same.n == 4


def test_queries_without_clicks_are_not_compared_and_weights_are_clipped():
    exam = np.array([1.0, 0.01, 0.01, 0.01, 0.01])
    events = [(_event(0), {}), (_event(1), {"d2": 1.0})]
    res = compare_rankings(events, lambda ev: np.array([0, 0, 9, 0, 0.0]), lambda ev: -np.arange(5.0), exam,
                           clip=4.0)
    w = 1 / np.log2(np.arange(2, 12))
    assert res.n == 1 and res.differences[0] == pytest.approx(4.0 * (w[0] - w[2]) / w.sum())


def test_bounds_widen_with_the_spread():
    c = PairedComparison(np.array([0.1, -0.1, 0.1, -0.1]))
    lo, hi = c.bounds(0.95)
    assert lo < 0 < hi and c.mean == 0.0
