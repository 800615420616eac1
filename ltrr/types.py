"""Typed batches that flow through the engine: queries, retrieval results, candidate unions with
provenance, plans with propensities, decisions and feedback. Arrays, never dicts of lists."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PAD_ID = -1


@dataclass(frozen=True)
class QueryBatch:
    """A batch of query texts plus a request-scoped memo.

    ``memo`` holds representations derived from the texts (token lists, embeddings) so a
    representation is computed once per request and shared by every strategy and feature that
    needs it. Keys are owned by whoever computes them, e.g. ``"embedding:<model>"``.
    """

    texts: tuple[str, ...]
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.texts)

    @classmethod
    def of(cls, queries: QueryBatch | Sequence[str] | str) -> QueryBatch:
        if isinstance(queries, QueryBatch):
            return queries
        if isinstance(queries, str):
            return cls((queries,))
        return cls(tuple(queries))

    def cached(self, key: str, compute):
        """Return ``memo[key]``, computing it with ``compute(self.texts)`` the first time."""
        if key not in self.memo:
            self.memo[key] = compute(self.texts)
        return self.memo[key]


@dataclass(frozen=True)
class RetrievalResult:
    """What one strategy returns for a batch: the top ``k`` items per query, best first.

    ``ids`` is ``int64[n_queries, k]`` of catalog indices padded with ``PAD_ID`` (-1);
    ``scores`` is ``float32[n_queries, k]`` padded with ``-inf``.
    """

    ids: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        if self.ids.ndim != 2 or self.ids.shape != self.scores.shape:
            raise ValueError(
                f"RetrievalResult needs 2-D ids and scores of one shape; got {self.ids.shape} "
                f"and {self.scores.shape}."
            )

    @property
    def n_queries(self) -> int:
        return self.ids.shape[0]

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Ids and scores of query ``i`` without padding."""
        ids = self.ids[i]
        keep = ids != PAD_ID
        return ids[keep], self.scores[i][keep]

    @classmethod
    def empty(cls, n_queries: int, k: int = 0) -> RetrievalResult:
        return cls(
            np.full((n_queries, k), PAD_ID, dtype=np.int64),
            np.full((n_queries, k), -np.inf, dtype=np.float32),
        )


def top_k(scores: np.ndarray, k: int, valid: np.ndarray | None = None) -> RetrievalResult:
    """Batched top-k of a dense ``[n_queries, n_items]`` score matrix.

    Ties are broken by the lower item index, so results are deterministic. Entries where
    ``valid`` is False (default: score <= 0 is *not* excluded; pass a mask to exclude) are padded.
    """
    scores = np.asarray(scores)
    if scores.ndim == 1:
        scores = scores[None, :]
    n_q, n_items = scores.shape
    k_eff = min(k, n_items)
    ids = np.full((n_q, k), PAD_ID, dtype=np.int64)
    out = np.full((n_q, k), -np.inf, dtype=np.float32)
    if k_eff == 0 or n_q == 0:
        return RetrievalResult(ids, out)
    masked = scores.astype(np.float64, copy=valid is not None)
    if valid is not None:
        masked[~valid] = -np.inf
    if k_eff < n_items:
        part = np.argpartition(-masked, k_eff - 1, axis=1)[:, :k_eff]
        # items tied with the k-th score may sit outside the partition; include them all so the
        # index tie-break is exact
        kth = np.take_along_axis(masked, part, axis=1).min(axis=1)
        rows = []
        for qi in range(n_q):
            cand = np.flatnonzero(masked[qi] >= kth[qi]) if np.isfinite(kth[qi]) else part[qi]
            order = np.lexsort((cand, -masked[qi, cand]))[:k_eff]
            rows.append(cand[order])
        top = np.stack(rows)
    else:
        top = np.lexsort((np.broadcast_to(np.arange(n_items), masked.shape), -masked), axis=1)
    top_scores = np.take_along_axis(masked, top, axis=1)
    finite = np.isfinite(top_scores)
    ids[:, :k_eff] = np.where(finite, top, PAD_ID)
    out[:, :k_eff] = np.where(finite, top_scores, -np.inf)
    return RetrievalResult(ids, out)


@dataclass(frozen=True)
class Candidates:
    """The union of the strategies' results for one query, with provenance.

    ``items`` are catalog indices (``int64[n]``); ``scores`` and ``ranks`` are ``float32[n, S]``
    with NaN where strategy ``s`` did not find the item (ranks are 1-based). ``depths``, when
    known, are the depths the strategies were asked for: a strategy at depth 0 did not run, so
    "not found" says nothing about an item there (the ranker's features keep the two apart).
    """

    strategies: tuple[str, ...]
    items: np.ndarray
    scores: np.ndarray
    ranks: np.ndarray
    depths: tuple[int, ...] = ()

    @property
    def found(self) -> np.ndarray:
        return ~np.isnan(self.ranks)

    @property
    def ran(self) -> np.ndarray:
        """``bool[S]``: which strategies were asked for candidates (all when ``depths`` is unknown)."""
        if not self.depths:
            return np.ones(len(self.strategies), dtype=bool)
        return np.asarray(self.depths) > 0

    def __len__(self) -> int:
        return int(self.items.shape[0])

    @classmethod
    def union(cls, names: Sequence[str], rows: Sequence[tuple[np.ndarray, np.ndarray]],
              depths: Sequence[int] = ()) -> Candidates:
        """Union per-strategy ``(ids, scores)`` rows by item id, keeping each one's score and rank
        (``depths``: what each strategy was asked for, kept as :attr:`depths`).

        Items are ordered by first appearance (strategy order, then rank), which is stable.
        """
        names = tuple(names)
        depths = tuple(int(d) for d in depths)
        if depths and len(depths) != len(names):
            raise ValueError(f"{len(depths)} depths for {len(names)} strategies")
        all_ids = [np.asarray(ids, dtype=np.int64) for ids, _ in rows]
        cat = np.concatenate(all_ids) if all_ids else np.empty(0, dtype=np.int64)
        if cat.size == 0:
            empty = np.empty((0, len(names)), dtype=np.float32)
            return cls(names, np.empty(0, dtype=np.int64), empty, empty.copy(), depths)
        uniq, first = np.unique(cat, return_index=True)
        items = uniq[np.argsort(first, kind="stable")]
        sorter = np.argsort(items)
        scores = np.full((items.size, len(names)), np.nan, dtype=np.float32)
        ranks = np.full((items.size, len(names)), np.nan, dtype=np.float32)
        for s, (ids, sc) in enumerate(rows):
            ids = np.asarray(ids, dtype=np.int64)
            if ids.size == 0:
                continue
            where = sorter[np.searchsorted(items, ids, sorter=sorter)]
            scores[where, s] = sc
            ranks[where, s] = np.arange(1, ids.size + 1, dtype=np.float32)
        return cls(names, items, scores, ranks, depths)


@dataclass(frozen=True)
class Plan:
    """A retrieval plan: how many candidates each strategy draws (0 = off), with propensities.

    ``propensity`` is the probability that the policy chose this whole plan;
    ``strategy_propensities[s]`` the probability of the depth chosen for strategy ``s`` (for
    factored estimators). ``estimated`` is True when the propensities were estimated by sampling
    rather than computed in closed form.
    """

    strategies: tuple[str, ...]
    depths: tuple[int, ...]
    propensity: float = 1.0
    strategy_propensities: tuple[float, ...] = ()
    action: int = -1
    policy: str = ""
    estimated: bool = False

    def __post_init__(self) -> None:
        if len(self.strategies) != len(self.depths):
            raise ValueError("Plan needs one depth per strategy.")
        if not (0.0 < self.propensity <= 1.0):
            raise ValueError(f"A plan's propensity must be in (0, 1]; got {self.propensity}.")
        if not self.strategy_propensities:
            object.__setattr__(self, "strategy_propensities", tuple(1.0 for _ in self.depths))

    def depth(self, name: str) -> int:
        return self.depths[self.strategies.index(name)]

    @property
    def total_depth(self) -> int:
        return int(sum(self.depths))

    def active(self) -> list[tuple[str, int]]:
        return [(s, d) for s, d in zip(self.strategies, self.depths, strict=True) if d > 0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "depths": dict(zip(self.strategies, self.depths, strict=True)),
            "propensity": self.propensity,
            "strategy_propensities": dict(
                zip(self.strategies, self.strategy_propensities, strict=True)
            ),
            "action": self.action,
            "policy": self.policy,
            "estimated": self.estimated,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Plan:
        names = tuple(d["depths"].keys())
        sp = d.get("strategy_propensities") or {}
        return cls(
            strategies=names,
            depths=tuple(int(d["depths"][n]) for n in names),
            propensity=float(d.get("propensity", 1.0)),
            strategy_propensities=tuple(float(sp.get(n, 1.0)) for n in names),
            action=int(d.get("action", -1)),
            policy=str(d.get("policy", "")),
            estimated=bool(d.get("estimated", False)),
        )


@dataclass(frozen=True)
class Decision:
    """Everything the engine decided for one request; this is what the event log stores."""

    event_id: str
    ts: float
    query: str
    context: Mapping[str, Any]
    x: np.ndarray
    plan: Plan
    candidates: Candidates
    features: np.ndarray
    page: np.ndarray
    page_scores: np.ndarray
    page_ids: tuple[str, ...]
    model_versions: Mapping[str, str]
    timings_ms: Mapping[str, float] = field(default_factory=dict)
    #: interleaved pages: the team that placed each item (0 baseline ranking, 1 learned ranker)
    teams: np.ndarray | None = None
    #: what each strategy of the plan cost, in ms (measured, or declared: ``policy.latency_source``)
    strategy_ms: np.ndarray | None = None


FEEDBACK_KINDS = ("click", "purchase", "dwell")


@dataclass(frozen=True)
class FeedbackEvent:
    """One user action on one shown item. ``value`` is the graded reward (1 for a click)."""

    item: str
    kind: str = "click"
    position: int | None = None
    value: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in FEEDBACK_KINDS:
            raise ValueError(f"Feedback kind must be one of {FEEDBACK_KINDS}; got {self.kind!r}.")


@dataclass(frozen=True)
class Feedback:
    """The feedback for one decision event."""

    event_id: str
    events: tuple[FeedbackEvent, ...]
    ts: float | None = None

    @classmethod
    def clicks(cls, event_id: str, items: Sequence[str], ts: float | None = None) -> Feedback:
        return cls(event_id, tuple(FeedbackEvent(i) for i in items), ts)
