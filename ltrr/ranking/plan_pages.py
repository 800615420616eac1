"""The page every retrieval plan would have shown, recovered from one max-depth union.

Strategies are deterministic and a depth-``d`` list is the prefix of the depth-``D`` list, so one
request answered with every strategy at its maximum depth holds the candidates of every smaller
plan: a plan's candidate set is the union of each strategy's first ``depth`` items. A candidate's
ranker features depend on the plan only through provenance (``s_score``/``s_rank``/``s_found``/
``s_rr`` of the strategies that did not draw it at the plan's depth, ``fused_rrf``,
``n_found_by``, ``best_rank``); the rest (text matches, click-memory counts, popularity, query
hints) is the same whatever the plan. So the page every plan *would have shown* is recovered
exactly from the max-depth union: mask the provenance (:class:`ltrr.features.ProvenanceColumns`),
score with the ranker, and order the way the engine does (score, then position in the plan's
union). A candidate's masked row depends only on which strategies include it, so one call scores
at most one row per (candidate, inclusion pattern).

The learner values every plan this way when the learned ranker serves (full-information plan
learning: the plan is judged by the page the served ranking would have built from it), and the
simulators' hindsight tables value plans this way for regret.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ltrr.features import FeatureSchema, ProvenanceColumns
from ltrr.types import Candidates, Decision


class Scorer(Protocol):
    def score(self, X: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class PlanPages:
    """The page each plan would have shown for one request."""

    pages: np.ndarray  #: ``int64[A, k]`` catalog rows in display order, ``-1`` padded
    n_candidates: np.ndarray  #: ``int64[A]`` size of each plan's candidate union


class RankedPlanPages:
    """Recovers, from a union drawn with every strategy at (at least) the largest depth of
    ``plans`` (``int[A, S]`` depths in ``strategies`` order), the page each plan would have shown
    under a ranker over ``schema``'s features."""

    def __init__(self, plans: np.ndarray, strategies: Sequence[str], schema: FeatureSchema, *, k: int = 10):
        self.plans = np.asarray(plans, dtype=np.int64)
        self.strategies = tuple(strategies)
        if self.plans.ndim != 2 or self.plans.shape[1] != len(self.strategies):
            raise ValueError(f"plans must be int[A, {len(self.strategies)}], got shape {self.plans.shape}")
        if len(self.strategies) > 30:
            raise ValueError("at most 30 strategies (inclusion patterns are bit masks)")
        self.k = int(k)
        self._provenance = ProvenanceColumns(schema, self.strategies)
        self._bits = (1 << np.arange(len(self.strategies), dtype=np.int64))

    def __call__(self, decision: Decision, ranker: Scorer) -> PlanPages:
        """The pages of every plan from a logged decision whose plan drew every strategy at
        least as deep as the deepest plan."""
        drawn = np.array([decision.plan.depths[decision.plan.strategies.index(s)] for s in self.strategies])
        short = np.flatnonzero((self.plans > drawn[None, :]).any(axis=0))
        if short.size:
            s = int(short[0])
            raise ValueError(f"the decision drew {self.strategies[s]} at depth {int(drawn[s])} but a plan "
                             f"needs {int(self.plans[:, s].max())}: value plans from a max-depth decision")
        return self.of_union(decision.candidates, decision.features, ranker)

    def of_union(self, cands: Candidates, features: np.ndarray, ranker: Scorer) -> PlanPages:
        """The pages of every plan from a max-depth union ``cands`` and its feature rows."""
        where = {s: j for j, s in enumerate(cands.strategies)}
        unknown = [s for s in self.strategies if s not in where]
        if unknown:
            raise ValueError(f"the candidates have no strategy {unknown}")
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
        span = self._bits[-1] * 2
        key = np.arange(n, dtype=np.int64)[None, :] * span + code
        uniq, inverse = np.unique(key[in_plan], return_inverse=True)
        rows = uniq // span
        keep = ((uniq % span)[:, None] & self._bits[None, :]) > 0  # [U, S]
        X = self._provenance.mask(np.array(features[rows], dtype=np.float32), keep, r[rows])
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
