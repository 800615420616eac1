"""The reward: what a decision earns from its clicks, and how the credit is shared among strategies.

One definition, used by the learner (live feedback, journal, replayed logs), the log export, the
hindsight tables and the simulators:

* ``reward.kind = "any_click"``: a page earns 1 if anything on it was clicked;
  ``"click_dcg"``: its clicks weighted ``1 / log2(1 + position)``, over the largest such sum of a
  full page (so a page with several good results earns more than one with a single click).
* Each minus ``cost_per_candidate`` per candidate the plan drew, clipped to [-1, 1].
* Per-strategy (semi-bandit) credit: strategy ``s`` earns the clicked items it drew, minus the
  cost of its own depth. ``credit = "full"``: every strategy that drew a clicked item is paid
  all of it (``any_click``: 1 if it drew any); ``"split"``: each clicked item's share of the page
  reward is divided equally among the strategies that drew it, so the credits sum to the plan's
  gain (for ``click_dcg``, the Shapley value of the coverage game).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from ltrr.config import EngineConfig

RewardKind = Literal["any_click", "click_dcg"]
Credit = Literal["full", "split"]
REWARD_KINDS: tuple[str, ...] = ("any_click", "click_dcg")


@dataclass(frozen=True)
class RewardSpec:
    """The reward settings of an engine (``[reward]`` in config, plus its page size)."""

    kind: str = "any_click"
    credit: str = "split"
    cost_per_candidate: float = 0.0
    page_size: int = 10
    #: reward subtracted per millisecond of a strategy's estimated latency
    latency_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in REWARD_KINDS:
            raise ValueError(f"Unknown reward kind {self.kind!r}; known: {', '.join(REWARD_KINDS)}")
        if self.credit not in ("full", "split"):
            raise ValueError(f"Unknown reward credit {self.credit!r}; known: full, split")

    @classmethod
    def from_config(cls, config: EngineConfig) -> RewardSpec:
        r = config.reward
        return cls(r.kind, r.credit, float(r.cost_per_candidate), int(config.page_size), float(r.latency_weight))


def position_weights(k: int) -> np.ndarray:
    """``1 / log2(1 + position)`` for positions 1..k."""
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def page_weights(spec: RewardSpec, rows: np.ndarray, page: np.ndarray) -> np.ndarray | None:
    """Each of ``rows``' share of the page reward if it is clicked (``click_dcg``: the weight of
    its position on ``page`` over a full page's sum, 0 below the page or off it); None for
    ``any_click``, where a click's value does not depend on its position."""
    if spec.kind != "click_dcg":
        return None
    w_pos = position_weights(spec.page_size)
    top = np.asarray(page, dtype=np.int64)[: spec.page_size]
    at = np.asarray(rows, dtype=np.int64)[:, None] == top[None, :]
    return (at @ w_pos[: top.size]) / w_pos.sum()


def page_gain(spec: RewardSpec, page: np.ndarray, clicked: np.ndarray) -> float:
    """What the page earned from its clicks before any cost: ``any_click`` 1 if anything on it
    was clicked, ``click_dcg`` the position weights of the clicked items over a full page's sum."""
    page = np.asarray(page, dtype=np.int64)
    hit = np.isin(page, np.asarray(clicked, dtype=np.int64))
    if spec.kind != "click_dcg":
        return float(hit.any())
    w = page_weights(spec, page[hit], page)
    return float(w.sum()) if w is not None else 0.0


def strategy_gain(found: np.ndarray, weights: np.ndarray | None, credit: str) -> np.ndarray:
    """Each strategy's gain, before its cost, from the clicked items: ``found[i, s]`` says whether
    strategy ``s`` drew clicked item ``i``; ``weights[i]`` is item ``i``'s share of the page reward
    (``click_dcg``) or None (``any_click``: the plan earns 1 if it drew any clicked item)."""
    found = np.asarray(found, dtype=bool)
    if found.shape[0] == 0:
        return np.zeros(found.shape[1])
    split = credit == "split"
    if weights is None:
        if not split:
            return np.asarray(found.any(axis=0), dtype=np.float64)
        covered = np.asarray(found.any(axis=1), dtype=np.float64)
        weights = covered / max(float(covered.sum()), 1.0)
    share = found.astype(np.float64)
    if split:
        share /= np.maximum(share.sum(axis=1, keepdims=True), 1.0)
    return np.asarray(share.T @ np.asarray(weights, dtype=np.float64), dtype=np.float64)


def decision_rewards(spec: RewardSpec, found: np.ndarray, clicked: np.ndarray, depths: Sequence[int],
                     weights: np.ndarray | None, strategy_ms: np.ndarray | None = None
                     ) -> tuple[float, np.ndarray]:
    """Plan reward and per-strategy rewards of one decision.

    ``found[i, s]``: strategy ``s`` drew item ``i`` (rows are the decision's candidates, or just
    its clicked items); ``clicked[i]``: item ``i`` was clicked; ``weights[i]``: its share of the
    page reward (:func:`page_weights`), None for ``any_click``; ``strategy_ms[s]``: strategy
    ``s``'s estimated latency at its depth. Each minus its cost (candidates and milliseconds),
    in [-1, 1].
    """
    clicked = np.asarray(clicked, dtype=bool)
    d = np.asarray(depths, dtype=np.float64)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)[clicked]
    gain_s = strategy_gain(np.asarray(found, dtype=bool)[clicked], w, spec.credit)
    gain = float(clicked.any()) if w is None else float(w.sum())
    cost_s = spec.cost_per_candidate * d
    if strategy_ms is not None:
        cost_s = cost_s + spec.latency_weight * np.asarray(strategy_ms, dtype=np.float64)
    reward = float(np.clip(gain - float(cost_s.sum()), -1.0, 1.0))
    return reward, np.clip(gain_s - cost_s, -1.0, 1.0)


def plan_rewards(spec: RewardSpec, ranks: np.ndarray, plans: np.ndarray,
                 weights: np.ndarray | None, plan_ms: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Full-information reward and recall of every plan on one logged search.

    ``ranks[c, s]`` is the 1-based rank of clicked item ``c`` in strategy ``s``'s list (inf when
    not found); ``plans[a, s]`` the depths of plan ``a``; ``weights[c]`` the clicked items' shares
    of the page reward (None for ``any_click``); ``plan_ms[a]`` each plan's estimated latency. A
    plan holds a clicked item when some strategy ranks it within the plan's depth. Returns
    ``(reward[a], recall[a])``; recall is NaN without clicks.
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    plans = np.asarray(plans)
    contained = np.asarray((ranks[None, :, :] <= plans[:, None, :]).any(axis=2))  # [plans, clicks]
    gain = (np.asarray(contained.any(axis=1), dtype=np.float64) if weights is None
            else contained @ np.asarray(weights, dtype=np.float64))
    rewards = np.clip(gain - plan_cost(spec, plans, plan_ms), -1.0, 1.0)
    recall = contained.mean(axis=1) if ranks.shape[0] else np.full(plans.shape[0], np.nan)
    return rewards, recall


def plan_page_rewards(spec: RewardSpec, ranks: np.ndarray, clicked: np.ndarray, plans: np.ndarray,
                      plan_ms: np.ndarray | None = None, rrf_k: float = 60.0) -> np.ndarray:
    """Full-information reward of every plan from the page it would have shown, on one search.

    ``ranks[i, s]`` is candidate ``i``'s 1-based rank in strategy ``s``'s list at the menu's
    largest depth (NaN or inf: not found), ``clicked[i]`` whether it was clicked, ``plans[a, s]``
    the depths of plan ``a``. Plan ``a``'s page is the reciprocal-rank fusion of its truncated
    lists (the incumbent's ranking, and the learned ranker's starting point), ties broken by
    candidate order as the engine does; it earns the clicked items on that page at the position
    they would have had (``click_dcg``: ``1 / log2(1 + position)`` over a full page's sum;
    ``any_click``: 1 if any is on it), minus its cost. A plan that keeps the clicked items in its
    candidates but pushes them down its page, or loses the items that lifted them, earns less:
    unlike candidate coverage (:func:`plan_rewards`), which a shallow plan nearly always
    matches. Items a plan would have shown that were never shown count as unclicked (the
    estimate is pessimistic for plans far from the one served). ``float[A]`` in [-1, 1].
    """
    ranks = np.nan_to_num(np.asarray(ranks, dtype=np.float64), nan=np.inf)
    plans = np.asarray(plans, dtype=np.float64)
    clicked = np.asarray(clicked, dtype=bool)
    n, k = ranks.shape[0], spec.page_size
    cost = plan_cost(spec, plans, plan_ms)
    if n == 0 or not clicked.any():
        return np.clip(-cost, -1.0, 1.0)
    drawn = ranks[None, :, :] <= plans[:, None, :]  # [A, n, S]
    fused = np.where(drawn, 1.0 / (rrf_k + np.where(np.isfinite(ranks), ranks, 0.0))[None, :, :], 0.0).sum(axis=2)
    fused = np.where(drawn.any(axis=2), fused, -np.inf)  # not a candidate of the plan
    order = np.argsort(-fused, axis=1, kind="stable")[:, :k]  # [A, k]: the plan's page
    on_page = np.take_along_axis(np.isfinite(fused), order, axis=1) & clicked[order]
    return np.clip(_clicks_gain(spec, on_page) - cost, -1.0, 1.0)


def ranked_page_rewards(spec: RewardSpec, pages: np.ndarray, clicked_rows: np.ndarray, plans: np.ndarray,
                        plan_ms: np.ndarray | None = None) -> np.ndarray:
    """Full-information reward of every plan from the page it would have shown, given as
    ``pages`` (``int64[A, k]`` catalog rows in display order, ``-1`` padded; e.g. the learned
    ranker's, :class:`ltrr.ranking.plan_pages.RankerPlanPages`): the clicked rows on each page at
    their positions, minus the plan's cost, as :func:`plan_page_rewards`. ``float[A]`` in [-1, 1]."""
    pages = np.asarray(pages, dtype=np.int64)[:, : spec.page_size]
    on_page = (pages >= 0) & np.isin(pages, np.asarray(clicked_rows, dtype=np.int64))
    return np.clip(_clicks_gain(spec, on_page) - plan_cost(spec, plans, plan_ms), -1.0, 1.0)


def plan_cost(spec: RewardSpec, plans: np.ndarray, plan_ms: np.ndarray | None = None) -> np.ndarray:
    """Each plan's cost: ``cost_per_candidate`` per candidate drawn plus ``latency_weight`` per
    ms of its latency (``plan_ms``, when given)."""
    cost = spec.cost_per_candidate * np.asarray(plans, dtype=np.float64).sum(axis=1)
    if plan_ms is not None:
        cost = cost + spec.latency_weight * np.asarray(plan_ms, dtype=np.float64)
    return cost


def _clicks_gain(spec: RewardSpec, on_page: np.ndarray) -> np.ndarray:
    """What each page (``bool[A, k]``: a clicked item at that position) earns before its cost."""
    if spec.kind == "click_dcg":
        w = position_weights(spec.page_size)
        return np.asarray((on_page * w[None, : on_page.shape[1]]).sum(axis=1) / w.sum())
    return np.asarray(on_page.any(axis=1), dtype=np.float64)


def expected_page_reward(kind: str, click_probabilities: np.ndarray, cost: np.ndarray | float) -> np.ndarray:
    """The reward of each page in expectation, from the click probability of every position
    (``float[pages, k]``, 0 where a page has no item), minus ``cost``, in [-1, 1]:
    ``any_click`` is P(at least one click), ``click_dcg`` the expected position-weighted clicks."""
    probs = np.asarray(click_probabilities, dtype=np.float64)
    if kind == "click_dcg":
        w_pos = position_weights(probs.shape[1])
        gain = probs @ w_pos / w_pos.sum()
    elif kind == "any_click":
        gain = 1.0 - np.prod(1.0 - probs, axis=1)
    else:
        raise ValueError(f"Unknown reward kind {kind!r}; known: {', '.join(REWARD_KINDS)}")
    return np.clip(gain - cost, -1.0, 1.0)
