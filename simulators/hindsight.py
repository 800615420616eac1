"""Full-information value of every retrieval plan, computed with the engine's own ranker.

Strategies are deterministic and a depth-``d`` list is the prefix of the depth-``D`` list, so one
request answered with every strategy at its maximum depth holds the candidates of every smaller
plan: a plan's candidate set is the union of each strategy's first ``depth`` items. A candidate's
ranker features depend on the plan only through provenance (``s_score``/``s_rank``/``s_found`` of
the strategies that did not draw it at the plan's depth, ``n_found_by``, ``best_rank``); the rest
(text matches, click-memory counts, popularity, query hints) is the same whatever the plan. So the
page every plan *would have shown* is recovered exactly from the logged max-depth decision: mask
the provenance, score with the ranker that was live for that request, and order the way the
engine does (score, then position in the plan's union). Its value is the engine's reward for that
page in expectation under a click model, minus the plan's cost.

This is what "the best fixed plan in hindsight" means for regret: the same ranker, the same
memory state, only the plan differs. A candidate's masked row depends only on which strategies
include it, so each round scores at most one row per (candidate, inclusion pattern) in one call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ltrr.features import FeatureSchema
from ltrr.offline.metrics import ndcg_from_grades
from ltrr.types import Decision


class Scorer(Protocol):
    def score(self, X: np.ndarray) -> np.ndarray: ...


class ClickProbabilities(Protocol):
    def click_probabilities(self, page_grades: Any) -> np.ndarray: ...


@dataclass(frozen=True)
class PlanPages:
    """The page each plan would have shown for one request."""

    pages: np.ndarray  #: ``int64[A, k]`` catalog rows in display order, ``-1`` padded
    n_candidates: np.ndarray  #: ``int64[A]`` size of each plan's candidate union


class HindsightPlanPages:
    """Recovers, from a decision made with every strategy at its maximum depth, the page each of
    ``plans`` (``int[A, S]`` depths in ``strategies`` order) would have shown."""

    def __init__(self, plans: np.ndarray, strategies: Sequence[str], schema: FeatureSchema, *, k: int = 10):
        self.plans = np.asarray(plans, dtype=np.int64)
        self.strategies = tuple(strategies)
        if self.plans.ndim != 2 or self.plans.shape[1] != len(self.strategies):
            raise ValueError(f"plans must be int[A, {len(self.strategies)}], got shape {self.plans.shape}")
        if len(self.strategies) > 30:
            raise ValueError("at most 30 strategies (inclusion patterns are bit masks)")
        self.k = int(k)
        missing = [f"{s}_{part}" for s in self.strategies for part in ("score", "rank", "found")
                   if f"{s}_{part}" not in schema.names]
        if missing:
            raise ValueError(f"the feature schema has no provenance columns {missing}")
        self._score_cols = np.array([schema.index(f"{s}_score") for s in self.strategies])
        self._rank_cols = np.array([schema.index(f"{s}_rank") for s in self.strategies])
        self._found_cols = np.array([schema.index(f"{s}_found") for s in self.strategies])
        self._n_found_col = schema.index("n_found_by")
        self._best_rank_col = schema.index("best_rank")
        self._bits = (1 << np.arange(len(self.strategies), dtype=np.int64))

    def __call__(self, decision: Decision, ranker: Scorer) -> PlanPages:
        cands = decision.candidates
        where = {s: j for j, s in enumerate(cands.strategies)}
        unknown = [s for s in self.strategies if s not in where]
        if unknown:
            raise ValueError(f"the decision's candidates have no strategy {unknown}")
        drawn = np.array([decision.plan.depths[decision.plan.strategies.index(s)] for s in self.strategies])
        short = np.flatnonzero((self.plans > drawn[None, :]).any(axis=0))
        if short.size:
            s = int(short[0])
            raise ValueError(f"the decision drew {self.strategies[s]} at depth {int(drawn[s])} but a plan "
                             f"needs {int(self.plans[:, s].max())}: value plans from a max-depth decision")
        A, n = self.plans.shape[0], len(cands)
        pages = np.full((A, self.k), -1, dtype=np.int64)
        if n == 0:
            return PlanPages(pages, np.zeros(A, dtype=np.int64))
        ranks = cands.ranks[:, [where[s] for s in self.strategies]].astype(np.float64)
        r = np.where(np.isnan(ranks), np.inf, ranks)  # [n, S]
        member = r[None, :, :] <= self.plans[:, None, :]  # [A, n, S]
        code = member.astype(np.int64) @ self._bits  # [A, n] inclusion pattern
        in_plan = code > 0
        # one feature row per distinct (candidate, pattern), scored in one call
        key = np.arange(n, dtype=np.int64)[None, :] * (self._bits[-1] * 2) + code
        uniq, inverse = np.unique(key[in_plan], return_inverse=True)
        rows = uniq // (self._bits[-1] * 2)
        keep = ((uniq % (self._bits[-1] * 2))[:, None] & self._bits[None, :]) > 0  # [U, S]
        X = np.array(decision.features[rows], dtype=np.float32)
        X[:, self._score_cols] = np.where(keep, X[:, self._score_cols], np.nan)
        X[:, self._rank_cols] = np.where(keep, X[:, self._rank_cols], np.nan)
        X[:, self._found_cols] = np.where(keep, X[:, self._found_cols], 0.0)
        X[:, self._n_found_col] = keep.sum(axis=1)
        kept_ranks = np.where(keep, r[rows], np.inf).min(axis=1)
        X[:, self._best_rank_col] = np.where(np.isfinite(kept_ranks), kept_ranks, np.nan)
        scores = np.full((A, n), -np.inf)
        scores[in_plan] = np.asarray(ranker.score(X), dtype=np.float64)[inverse]
        # the engine breaks score ties by union position: first strategy (in order) holding the
        # item at the plan's depth, then its rank there
        first = np.argmax(member, axis=2)  # [A, n]
        first_rank = np.take_along_axis(np.broadcast_to(r, member.shape), first[:, :, None], axis=2)[:, :, 0]
        top = float(np.max(np.where(np.isfinite(r), r, 0.0))) + 1.0
        position = np.where(in_plan, first * top + first_rank, np.inf)
        order = np.lexsort((position, -scores), axis=-1)[:, : self.k]
        shown = np.take_along_axis(in_plan, order, axis=1)
        width = min(self.k, n)
        pages[:, :width] = np.where(shown, cands.items[order], -1)
        return PlanPages(pages, in_plan.sum(axis=1))


def expected_reward(page_grades: np.ndarray, click_model: ClickProbabilities, kind: str,
                    cost: np.ndarray | float) -> np.ndarray:
    """The engine's reward (``reward.kind``) for each page in expectation under ``click_model``,
    minus ``cost``, clipped to [-1, 1] like the engine's.

    ``page_grades`` is ``float[A, k]`` with ``-1`` where a page has no document. ``any_click`` is
    P(at least one click); ``click_dcg`` is the clicks weighted ``1/log2(1 + position)`` over the
    weight of a full page.
    """
    grades = np.asarray(page_grades, dtype=np.float64)
    probs = click_model.click_probabilities(grades)
    probs = np.where(grades < 0, 0.0, probs)
    if kind == "click_dcg":
        w_pos = 1.0 / np.log2(np.arange(2, grades.shape[1] + 2, dtype=np.float64))
        gain = probs @ w_pos / w_pos.sum()
    elif kind == "any_click":
        gain = 1.0 - np.prod(1.0 - probs, axis=1)
    else:
        raise ValueError(f"unknown reward kind {kind!r}; expected 'any_click' or 'click_dcg'")
    return np.clip(gain - cost, -1.0, 1.0)


def value_pages(pages: np.ndarray, relevant: Mapping[int, float], click_model: ClickProbabilities, *,
                kind: str, cost: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Expected reward and true nDCG@k of each page (``int64[A, k]``, ``-1`` padded) for a query
    whose graded relevance is ``relevant`` (catalog row -> grade)."""
    pages = np.asarray(pages, dtype=np.int64)
    rel_rows = np.fromiter(relevant.keys(), dtype=np.int64, count=len(relevant))
    rel_grades = np.fromiter(relevant.values(), dtype=np.float64, count=len(relevant))
    grades = np.zeros(pages.shape, dtype=np.float64)
    if rel_rows.size:
        order = np.argsort(rel_rows)
        pos = np.clip(np.searchsorted(rel_rows[order], pages), 0, rel_rows.size - 1)
        hit = rel_rows[order][pos] == pages
        grades = np.where(hit, rel_grades[order][pos], 0.0)
    grades = np.where(pages < 0, -1.0, grades)
    value = expected_reward(grades, click_model, kind, cost)
    if not rel_rows.size:
        return value, np.full(pages.shape[0], np.nan)
    judged = np.broadcast_to(rel_grades, (pages.shape[0], rel_grades.size))
    ndcg = ndcg_from_grades(np.where(grades < 0, np.nan, grades), judged, pages.shape[1])
    return value, ndcg


class HindsightPlanValuer:
    """Pages (:class:`HindsightPlanPages`) and values (:func:`value_pages`) of every plan, with the
    engine's reward kind and a cost of ``cost_per_candidate`` per candidate a plan draws."""

    def __init__(self, plans: np.ndarray, strategies: Sequence[str], schema: FeatureSchema,
                 click_model: ClickProbabilities, *, kind: str, cost_per_candidate: float, k: int = 10):
        self.pages = HindsightPlanPages(plans, strategies, schema, k=k)
        self.click_model = click_model
        self.kind = kind
        self.cost = float(cost_per_candidate) * self.pages.plans.sum(axis=1)

    def value(self, pages: np.ndarray, relevant: Mapping[int, float]) -> tuple[np.ndarray, np.ndarray]:
        """Expected reward and true nDCG of each plan's page."""
        return value_pages(pages, relevant, self.click_model, kind=self.kind, cost=self.cost)
