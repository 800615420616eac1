"""The one reward definition (ltrr.reward) and its users: the click-log export credits
strategies the way the learner does (split credit once silently became full credit there)."""

from __future__ import annotations

import numpy as np
import pytest

from ltrr.offline.logs import record_from_decision
from ltrr.reward import (
    RewardSpec,
    decision_rewards,
    expected_page_reward,
    page_weights,
    plan_rewards,
)
from ltrr.types import Candidates, Decision, Plan


def _decision() -> Decision:
    """Items 10, 11, 12 on the page; 10 drawn by both strategies, 11 by 'a', 12 by 'b'."""
    nan = np.nan
    cands = Candidates(("a", "b"), np.array([10, 11, 12]),
                       np.array([[3.0, 2.0], [1.0, nan], [nan, 0.5]], dtype=np.float32),
                       np.array([[1, 1], [2, nan], [nan, 2]], dtype=np.float32))
    return Decision("e1", 5.0, "q", {}, np.ones(2), Plan(("a", "b"), (10, 20), 0.5), cands,
                    np.zeros((3, 1), np.float32), np.array([10, 11, 12]), np.zeros(3, np.float32),
                    ("i10", "i11", "i12"), {})


W = 1 / np.log2(np.arange(2, 12))


@pytest.mark.parametrize("kind", ["any_click", "click_dcg"])
def test_exported_records_credit_strategies_as_the_learner_does(kind):
    d = _decision()
    clicked_ids = ["i10", "i11"]  # one item both strategies drew, one only 'a' drew
    for credit in ("full", "split"):
        spec = RewardSpec(kind, credit, cost_per_candidate=0.001, page_size=10)
        rec = record_from_decision(d, clicked_ids, spec)
        want = decision_rewards(spec, d.candidates.found, np.array([True, True, False]), (10, 20),
                                page_weights(spec, d.candidates.items, d.page))
        assert rec.reward == pytest.approx(want[0])
        np.testing.assert_allclose(rec.strategy_rewards, want[1])
    cost = 0.001 * np.array([10, 20])
    split = record_from_decision(d, clicked_ids, RewardSpec(kind, "split", 0.001)).strategy_rewards + cost
    full = record_from_decision(d, clicked_ids, RewardSpec(kind, "full", 0.001)).strategy_rewards + cost
    if kind == "any_click":
        np.testing.assert_allclose(full, [1.0, 1.0])
        np.testing.assert_allclose(split, [0.75, 0.25])  # item 10 shared, item 11 all 'a''s
    else:
        w10, w11 = W[0] / W.sum(), W[1] / W.sum()
        np.testing.assert_allclose(full, [w10 + w11, w10])
        np.testing.assert_allclose(split, [w10 / 2 + w11, w10 / 2])


def test_plan_rewards_value_every_plan_from_the_clicked_items_ranks():
    ranks = np.array([[1.0, np.inf], [30.0, 5.0]])  # click 0: 'a' rank 1; click 1: 'a' 30, 'b' 5
    plans = np.array([[10, 0], [0, 10], [50, 0], [10, 10]])
    spec = RewardSpec("click_dcg", cost_per_candidate=0.0)
    rewards, recall = plan_rewards(spec, ranks, plans, np.array([0.3, 0.2]))
    np.testing.assert_allclose(rewards, [0.3, 0.2, 0.5, 0.5])
    np.testing.assert_allclose(recall, [0.5, 0.5, 1.0, 1.0])
    _, none = plan_rewards(spec, np.empty((0, 2)), plans, np.empty(0))
    assert np.isnan(none).all()


def test_expected_page_reward_and_bad_kinds():
    probs = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(expected_page_reward("any_click", probs, 0.1), [0.65, -0.1])
    w = 1 / np.log2(np.arange(2, 5))
    np.testing.assert_allclose(expected_page_reward("click_dcg", probs, 0.0), [0.5 * (w[0] + w[1]) / w.sum(), 0.0])
    with pytest.raises(ValueError, match="Unknown reward kind 'ctr'; known: any_click, click_dcg"):
        expected_page_reward("ctr", probs, 0.0)
    with pytest.raises(ValueError, match="Unknown reward credit 'half'; known: full, split"):
        RewardSpec("any_click", "half")


def test_plan_page_rewards_value_each_plan_by_the_page_it_would_have_shown():
    """Each plan's page is RRF of its truncated lists; it earns the clicked items at the positions
    they would have had there (computed by hand on a page of 3)."""
    from ltrr.reward import RewardSpec, plan_page_rewards

    spec = RewardSpec("click_dcg", "split", 0.0, 3, 0.0)
    # candidate ranks in (bm25, dense) at the largest depth; items 1 and 2 were clicked
    ranks = np.array([[1, np.nan], [2, 1], [np.nan, 2], [3, 3]], dtype=float)
    clicked = np.array([False, True, True, False])
    plans = np.array([[1, 0], [3, 0], [3, 3], [0, 3]])
    w = 1.0 / np.log2(np.arange(2, 5))
    got = plan_page_rewards(spec, ranks, clicked, plans)
    # [1, 0]: page (0): nothing clicked; [3, 0]: page (0, 1, 3), item 1 second;
    # [3, 3]: RRF page (1, 3, 0), item 1 first; [0, 3]: page (1, 2, 3), items 1 and 2 first and second
    np.testing.assert_allclose(got, [0.0, w[1] / w.sum(), w[0] / w.sum(), (w[0] + w[1]) / w.sum()])
    # coverage would rate the shallow bm25 plan [3, 0] like [3, 3]; the page tells them apart
    assert got[2] > got[1]
    # costs per candidate and per millisecond; any_click earns 1 when a clicked item is on the page
    priced = plan_page_rewards(RewardSpec("any_click", "split", 0.01, 3, 0.001), ranks, clicked, plans,
                               plan_ms=np.array([1.0, 1.0, 2.0, 1.0]))
    np.testing.assert_allclose(priced, [-0.011, 1 - 0.031, 1 - 0.062, 1 - 0.031])
    # no click: every plan earns minus its cost
    np.testing.assert_allclose(plan_page_rewards(spec, ranks, np.zeros(4, bool), plans), 0.0)
