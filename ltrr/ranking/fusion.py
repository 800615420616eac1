"""Rank fusion of several strategies' candidate lists: the strong unsupervised hybrids.

Reciprocal rank fusion (Cormack et al., 2009): ``sum_s w_s / (k + rank_s)``.
Weighted score fusion: each strategy's scores min-max normalized over the union, then a weighted
sum (a strategy that did not find an item contributes 0).
Both work on a :class:`~ltrr.types.Candidates` union, batched over its rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ltrr.errors import ConfigError
from ltrr.types import Candidates

FUSION_METHODS = ("rrf", "weighted")


@dataclass(frozen=True)
class FusionSpec:
    """Which fusion, with its constant ``k`` (RRF) and per-strategy weights (default 1)."""

    method: str
    k: float = 60.0
    weights: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in FUSION_METHODS:
            raise ConfigError(f"Unknown fusion {self.method!r}; methods: {', '.join(FUSION_METHODS)}")
        if self.k <= 0:
            raise ConfigError(f"The RRF constant k must be > 0. Got {self.k} instead.")


def _weights(cands: Candidates, weights: Mapping[str, float]) -> np.ndarray:
    unknown = sorted(set(weights) - set(cands.strategies))
    if unknown:
        raise ConfigError(f"fusion weight for unknown strategy {unknown[0]!r}; strategies: {', '.join(cands.strategies)}")
    return np.array([float(weights.get(s, 1.0)) for s in cands.strategies])


def rrf_scores(cands: Candidates, k: float = 60.0, weights: Mapping[str, float] | None = None) -> np.ndarray:
    """Reciprocal-rank-fusion score of every candidate."""
    w = _weights(cands, weights or {})
    return np.nansum(w / (k + cands.ranks.astype(np.float64)), axis=1)


def weighted_scores(cands: Candidates, weights: Mapping[str, float] | None = None) -> np.ndarray:
    """Weighted sum of per-strategy min-max normalized scores."""
    w = _weights(cands, weights or {})
    s = cands.scores.astype(np.float64)
    lo = np.nanmin(np.where(np.isnan(s), np.inf, s), axis=0) if len(cands) else np.zeros(s.shape[1])
    hi = np.nanmax(np.where(np.isnan(s), -np.inf, s), axis=0) if len(cands) else np.zeros(s.shape[1])
    span = np.where(hi > lo, hi - lo, 1.0)
    norm = np.where(np.isnan(s), 0.0, (s - lo) / span)
    # a strategy whose scores are all equal still gives its items full credit
    norm = np.where(~np.isnan(s) & (hi <= lo), 1.0, norm)
    return norm @ w


def fuse(cands: Candidates, spec: FusionSpec) -> np.ndarray:
    if spec.method == "rrf":
        return rrf_scores(cands, spec.k, spec.weights)
    return weighted_scores(cands, spec.weights)
