"""The page every menu plan would have shown for one request, ordered by the engine's ranker.

Strategies are deterministic and a depth-``d`` list is the prefix of the depth-``D`` list, so one
request answered with every strategy at its largest menu depth holds the candidates of every
smaller plan. A candidate's ranker features depend on the plan only through provenance
(:class:`~ltrr.features.ProvenanceColumns`), so each plan's page is recovered exactly: mask the
provenance, score with the ranker, order the way the engine does (score, then position in the
plan's union). A masked row depends only on which strategies include the candidate and which the
plan runs, so one call scores at most one row per such (candidate, pattern).

The learner values plans this way once the learned ranker orders the pages
(``policy.plan_pages = "ranker"``), and :mod:`simulators.hindsight` values them for regret.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from ltrr.features import FeatureSchema, ProvenanceColumns
from ltrr.types import Candidates, Decision


class Scorer(Protocol):
    """What orders a page: a score per feature row (the LambdaMART ranker)."""

    def score(self, X: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class PlanPages:
    """The page each plan would have shown for one request."""

    pages: np.ndarray  #: ``int64[A, k]`` catalog rows in display order, ``-1`` padded
    n_candidates: np.ndarray  #: ``int64[A]`` size of each plan's candidate union


class RankerPlanPages:
    """Recovers, from candidates drawn with every strategy at least as deep as any of ``plans``
    (``int[A, S]`` depths in ``strategies`` order) and their feature rows, the page each plan
    would have shown under a ranker. ``match_when_off`` is the engine's feature builder's
    (``ranker.match_when_off``)."""

    def __init__(self, plans: np.ndarray, strategies: Sequence[str], schema: FeatureSchema, *, k: int = 10,
                 match_when_off: Literal["score", "missing"] = "score"):
        self.plans = np.asarray(plans, dtype=np.int64)
        self.strategies = tuple(strategies)
        if self.plans.ndim != 2 or self.plans.shape[1] != len(self.strategies):
            raise ValueError(f"plans must be int[A, {len(self.strategies)}], got shape {self.plans.shape}")
        if len(self.strategies) > 30:
            raise ValueError("at most 30 strategies (inclusion patterns are bit masks)")
        self.k = int(k)
        self.schema = schema
        self._provenance = ProvenanceColumns(schema, self.strategies, match_when_off=match_when_off)
        self._bits = (1 << np.arange(len(self.strategies), dtype=np.int64))
        # the distinct sets of strategies the plans run ([P, S]) and each plan's set ([A, 1]): a
        # strategy a plan leaves off has missing provenance, not "not found"
        runs, run_idx = np.unique(self.plans > 0, axis=0, return_inverse=True)
        self._runs, self._run_idx = runs, np.asarray(run_idx).reshape(-1, 1)

    def __call__(self, decision: Decision, ranker: Scorer) -> PlanPages:
        """The pages from a logged decision (its candidates, plan depths and feature rows)."""
        return self.pages(decision.candidates, decision.features, decision.plan.strategies,
                          decision.plan.depths, ranker)

    def pages(self, cands: Candidates, features: np.ndarray, drawn_strategies: Sequence[str],
              drawn_depths: Sequence[int], ranker: Scorer) -> PlanPages:
        """The pages from ``cands`` (drawn at ``drawn_depths`` per ``drawn_strategies``) and
        their feature rows ``features``; refused when a plan needs a strategy deeper."""
        where = {s: j for j, s in enumerate(cands.strategies)}
        unknown = [s for s in self.strategies if s not in where]
        if unknown:
            raise ValueError(f"the candidates have no strategy {unknown}")
        drawn_strategies = list(drawn_strategies)
        drawn = np.array([drawn_depths[drawn_strategies.index(s)] for s in self.strategies])
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
        # one feature row per distinct (candidate, pattern, strategies the plan runs), scored in
        # one call
        span, n_runs = self._bits[-1] * 2, len(self._runs)
        key = (np.arange(n, dtype=np.int64)[None, :] * n_runs + self._run_idx) * span + code
        uniq, inverse = np.unique(key[in_plan], return_inverse=True)
        rows = uniq // (span * n_runs)
        keep = ((uniq % span)[:, None] & self._bits[None, :]) > 0  # [U, S]
        ran = self._runs[(uniq // span) % n_runs]  # [U, S]
        X = self._provenance.mask(np.array(features[rows], dtype=np.float32), keep, r[rows], ran)
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
