"""Each strategy's recent success rate: a context signal for the policy.

A strategy *succeeds* on a credited event when it ran (depth > 0) and drew at least one of the
clicked items. The rate is an exponentially decayed mean over the events the strategy ran on,
with a half-life counted in those events, so it tracks drift (a strategy going stale, a memory
filling up) without a window buffer. Before a strategy has run, its rate is 0.

Exposed to the policy as the context features ``success_<strategy>`` (see :mod:`ltrr.context`);
saved with the engine (JSON in the manifest) so a reloaded engine decides the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


class StrategySuccess:
    """Decayed per-strategy success counts over the events each strategy ran on."""

    def __init__(self, strategies: Sequence[str], half_life: float = 500.0):
        if not half_life > 0:
            raise ValueError(f"half_life must be > 0, got {half_life!r}")
        self.strategies = tuple(strategies)
        self.half_life = float(half_life)
        self._decay = 0.5 ** (1.0 / self.half_life)
        self.hits = np.zeros(len(self.strategies))
        self.runs = np.zeros(len(self.strategies))

    def observe(self, depths: Sequence[int] | np.ndarray, hit: np.ndarray) -> None:
        """One credited event: ``depths`` of the plan, ``hit[s]`` whether strategy ``s`` drew a
        clicked item. Strategies that did not run are left as they were."""
        ran = np.asarray(depths) > 0
        hit = np.asarray(hit, dtype=bool)
        self.hits[ran] = self.hits[ran] * self._decay + hit[ran]
        self.runs[ran] = self.runs[ran] * self._decay + 1.0

    def rates(self) -> np.ndarray:
        """``float[S]`` decayed success rate of each strategy (0 before it first ran)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.runs > 0, self.hits / self.runs, 0.0)

    def signals(self, n: int) -> dict[str, np.ndarray]:
        """The ``success_<strategy>`` context signals for ``n`` queries."""
        return {f"success_{s}": np.full(n, r) for s, r in zip(self.strategies, self.rates(), strict=True)}

    def to_dict(self) -> dict[str, Any]:
        return {"half_life": self.half_life, "strategies": list(self.strategies),
                "hits": self.hits.tolist(), "runs": self.runs.tolist()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StrategySuccess:
        obj = cls(d["strategies"], float(d["half_life"]))
        obj.hits = np.asarray(d["hits"], dtype=np.float64)
        obj.runs = np.asarray(d["runs"], dtype=np.float64)
        if obj.hits.shape != (len(obj.strategies),) or obj.runs.shape != obj.hits.shape:
            raise ValueError("strategy success state: hits/runs do not match the strategies")
        return obj
