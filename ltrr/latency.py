"""Latency of each strategy, measured online: the cost of a plan in milliseconds.

Every search times each strategy's ``retrieve`` call at the depth the plan drew. Per (strategy,
depth) the tracker keeps an exponentially decayed histogram of those times over log-spaced bins
(half-life in calls), from which it reads a decayed mean and a decayed 99th percentile. A plan's
estimated latency is the sum over its strategies (they run one after another); its p99 is bounded
by the sum of the strategies' p99s. A (strategy, depth) never measured yet is estimated by the
strategy's own ``cost_ms(depth)`` hint.

The reward charges ``reward.latency_weight`` per millisecond of the plan's estimated latency (per
strategy in the per-strategy credit), beside ``cost_per_candidate``; ``policy.p99_budget_ms``
keeps the policy from choosing plans whose estimated p99 would exceed it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

#: histogram bins: 0.01 ms .. ~10 s, 16 per decade
_EDGES = np.logspace(-2, 4, 6 * 16 + 1)
_MIDS = np.sqrt(_EDGES[:-1] * _EDGES[1:])


class LatencyTracker:
    """Decayed latency histograms per (strategy, depth option); see the module docstring."""

    def __init__(self, strategies: Sequence[str], options: Sequence[Sequence[int]],
                 hints: Sequence[Callable[[int], float]] | None = None, half_life: float = 500.0):
        if not half_life > 0:
            raise ValueError(f"half_life must be > 0; got {half_life!r}")
        self.strategies = tuple(strategies)
        self.options = [tuple(sorted(set(int(d) for d in o if d > 0))) for o in options]
        self.hints = list(hints) if hints is not None else [lambda k: 0.0] * len(self.strategies)
        self.half_life = float(half_life)
        self._decay = 0.5 ** (1.0 / self.half_life)
        self.hist = [np.zeros((len(o), _MIDS.size)) for o in self.options]

    def observe(self, strategy: int, depth: int, ms: float) -> None:
        """One measured ``retrieve`` call of ``strategy`` (index) at ``depth``."""
        opts = self.options[strategy]
        if depth <= 0 or depth not in opts:
            return
        row = self.hist[strategy][opts.index(depth)]
        row *= self._decay
        row[min(int(np.searchsorted(_EDGES, max(ms, _EDGES[0]), side="right")) - 1, _MIDS.size - 1)] += 1.0

    def _stats(self, strategy: int, depth: int) -> tuple[float, float]:
        if depth <= 0:
            return 0.0, 0.0
        opts = self.options[strategy]
        if depth in opts:
            row = self.hist[strategy][opts.index(depth)]
            total = row.sum()
            if total > 0:
                mean = float(row @ _MIDS / total)
                cum = np.cumsum(row) / total
                p99 = float(_EDGES[1:][min(int(np.searchsorted(cum, 0.99)), _MIDS.size - 1)])
                return mean, max(p99, mean)
        hint = float(self.hints[strategy](int(depth)))
        return hint, hint

    def strategy_ms(self, depths: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(mean_ms[S], p99_ms[S])`` of each strategy at the given depths (0 when off)."""
        stats = np.array([self._stats(s, int(d)) for s, d in enumerate(depths)], dtype=np.float64)
        return stats[:, 0], stats[:, 1]

    def plan_ms(self, plans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(mean_ms[A], p99_ms[A])`` of every plan (``int[A, S]`` depths)."""
        plans = np.asarray(plans)
        mean = np.zeros(plans.shape[0])
        p99 = np.zeros(plans.shape[0])
        cache: dict[tuple[int, int], tuple[float, float]] = {}
        for s in range(plans.shape[1]):
            for d in np.unique(plans[:, s]):
                cache[(s, int(d))] = self._stats(s, int(d))
            m = np.array([cache[(s, int(d))][0] for d in plans[:, s]])
            q = np.array([cache[(s, int(d))][1] for d in plans[:, s]])
            mean += m
            p99 += q
        return mean, p99

    def to_dict(self) -> dict[str, Any]:
        return {"half_life": self.half_life, "strategies": list(self.strategies),
                "options": [list(o) for o in self.options], "hist": [h.tolist() for h in self.hist]}

    def restore(self, d: dict[str, Any]) -> None:
        """Load saved histograms (those of strategies and depths this tracker still has)."""
        for name, opts, hist in zip(d.get("strategies", []), d.get("options", []), d.get("hist", []), strict=False):
            if name not in self.strategies:
                continue
            s = self.strategies.index(name)
            for j, depth in enumerate(opts):
                if depth in self.options[s] and len(hist[j]) == _MIDS.size:
                    self.hist[s][self.options[s].index(depth)] = np.asarray(hist[j], dtype=np.float64)
