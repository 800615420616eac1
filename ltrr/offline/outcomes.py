"""Full-information outcome of every menu plan on one logged search.

Strategies are deterministic and a depth-``d`` list is the prefix of the depth-``D`` list, so
one retrieval per strategy at its largest menu depth tells, for every plan, which clicked items
its candidates would have held, hence its reward (:func:`ltrr.reward.plan_rewards`) and recall.
Replay learns from it (warm start of foreign logs, best plan in hindsight), and sums of it over
a log are the shard-parallel plan statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ltrr.reward import RewardSpec, page_weights, plan_page_rewards, plan_rewards
from ltrr.types import Candidates, QueryBatch

if TYPE_CHECKING:
    from ltrr.engine import Engine
    from ltrr.offline.logs import LogRecord


@dataclass(frozen=True)
class PlanOutcomes:
    """``results[s]``: strategy ``s``'s ``(ids, scores)`` at its largest menu depth;
    ``ranks[c, s]``: 1-based rank of clicked item ``c`` there (inf: not found); ``rewards[a]`` and
    ``recall[a]`` of every menu plan (recall NaN without clicks)."""

    results: list[tuple[np.ndarray, np.ndarray]]
    ranks: np.ndarray
    rewards: np.ndarray
    recall: np.ndarray


def plan_outcomes(engine: Engine, batch: QueryBatch, clicked_rows: np.ndarray,
                  weights: np.ndarray | None, plan_ms: np.ndarray | None = None) -> PlanOutcomes:
    """Retrieve once per strategy at its largest menu depth and value every menu plan for the
    clicked items (``weights``: their shares of the page reward, None for ``any_click``;
    ``plan_ms``: every plan's latency, default the engine's current estimates)."""
    menu = engine.policy.menu
    max_depth = menu.plans.max(axis=0)
    results = engine.retrieve_lists(batch, menu.strategies, tuple(int(d) for d in max_depth))
    clicked_rows = np.asarray(clicked_rows, dtype=np.int64)
    ranks = np.full((clicked_rows.size, len(results)), np.inf)
    for s, (ids, _sc) in enumerate(results):
        hit_c, hit_i = np.nonzero(clicked_rows[:, None] == ids[None, :])
        ranks[hit_c, s] = hit_i + 1
    if plan_ms is None:
        plan_ms = engine.latency.plan_ms(menu.plans)[0]
    rewards, recall = plan_rewards(RewardSpec.from_config(engine.config), ranks, menu.plans, weights, plan_ms)
    return PlanOutcomes(results, ranks, rewards, recall)


def plan_page_outcomes(engine: Engine, batch: QueryBatch, clicked_rows: np.ndarray,
                       plan_ms: np.ndarray | None = None) -> np.ndarray:
    """Retrieve once per strategy at its largest menu depth and value every menu plan by the page
    it would have shown for the clicked items (:func:`ltrr.reward.plan_page_rewards`)."""
    menu = engine.policy.menu
    max_depth = menu.plans.max(axis=0)
    rows = engine.retrieve_lists(batch, menu.strategies, tuple(int(d) for d in max_depth))
    cands = Candidates.union(menu.strategies, rows)
    if plan_ms is None:
        plan_ms = engine.latency.plan_ms(menu.plans)[0]
    return plan_page_rewards(RewardSpec.from_config(engine.config), cands.ranks,
                             np.isin(cands.items, np.asarray(clicked_rows, dtype=np.int64)), menu.plans, plan_ms,
                             engine.config.incumbent.rrf_k)


def record_outcomes(engine: Engine, record: LogRecord) -> tuple[np.ndarray, np.ndarray]:
    """``(plan_rewards, plan_recall)`` of every menu plan on one logged search, learning
    nothing (sums of these over a log are the best-fixed-plan-in-hindsight statistics)."""
    clicked = engine.catalog.rows_of(record.clicks)
    clicked = clicked[clicked >= 0]
    weights = page_weights(RewardSpec.from_config(engine.config), clicked, engine.catalog.rows_of(record.shown))
    out = plan_outcomes(engine, QueryBatch((record.query,)), clicked, weights)
    return out.rewards, out.recall
