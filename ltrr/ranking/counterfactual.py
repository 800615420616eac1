"""Off-policy comparison of two rankings from logged clicks (counterfactual learning to rank).

Under the position-based model a click on the item shown at rank ``r`` stands for
``1 / gamma_r`` relevant impressions (``gamma``: examination probability, estimated from the log
by :func:`ltrr.ranking.debias.examination_from_clicks`). The inverse-propensity estimate of a
ranking's DCG@k on a logged query is therefore ``sum over clicked items of
w(rank in the new ranking) / gamma(rank where it was shown)`` (Joachims, Swaminathan & Schnabel,
2017), unbiased for the relevant items that were shown, with weights clipped for variance.
Comparing two rankings of the same logged candidates on the same clicks gives one paired
difference per query; their mean and standard error give a lower confidence bound on how much
better the challenger is. Items never shown cannot be credited, so the comparison is
conservative for a challenger that brings new items to the top.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import norm

from ltrr.ranking.debias import examination_from_clicks
from ltrr.reward import position_weights
from ltrr.store.events import LoggedEvent


@dataclass(frozen=True)
class PairedComparison:
    """Per-query IPS utility differences (challenger minus baseline) and their summary."""

    differences: np.ndarray

    @property
    def n(self) -> int:
        return int(self.differences.size)

    @property
    def mean(self) -> float:
        return float(self.differences.mean()) if self.n else 0.0

    @property
    def stderr(self) -> float:
        return float(self.differences.std(ddof=1) / np.sqrt(self.n)) if self.n > 1 else float("inf")

    def bounds(self, confidence: float) -> tuple[float, float]:
        """One-sided lower and upper bounds of the mean difference at ``confidence``."""
        z = float(norm.ppf(confidence))
        return self.mean - z * self.stderr, self.mean + z * self.stderr

    def to_dict(self, confidence: float) -> dict[str, Any]:
        lo, hi = self.bounds(confidence)
        return {"test": "counterfactual", "queries": self.n, "mean_difference": round(self.mean, 6),
                "stderr": round(self.stderr, 6), "lower": round(lo, 6), "upper": round(hi, 6),
                "confidence": confidence}


def examination(events: Iterable[tuple[LoggedEvent, dict[str, float]]]) -> np.ndarray:
    """Relative examination probability per display rank, estimated from the logged pages."""
    pos, keys, clicks = [], [], []
    for ev, fb in events:
        q = " ".join(ev.query.lower().split())
        for r, item in enumerate(ev.page_ids):
            pos.append(r)
            keys.append(f"{q}\x1f{item}")
            clicks.append(fb.get(item, 0.0) > 0)
    return examination_from_clicks(np.asarray(pos), np.asarray(keys, dtype=object), np.asarray(clicks))


def _ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of every row under the engine's order (score, then union position)."""
    order = np.lexsort((np.arange(scores.size), -scores))
    ranks = np.empty(scores.size, dtype=np.int64)
    ranks[order] = np.arange(1, scores.size + 1)
    return ranks


def compare_rankings(events: Iterable[tuple[LoggedEvent, dict[str, float]]],
                     challenger: Callable[[LoggedEvent], np.ndarray],
                     baseline: Callable[[LoggedEvent], np.ndarray],
                     exam: np.ndarray, *, k: int = 10, clip: float = 10.0) -> PairedComparison:
    """Paired IPS-DCG@k differences on logged queries with clicks; ``challenger`` and
    ``baseline`` give the scores of a logged event's candidates (higher first)."""
    w_pos = position_weights(k)
    diffs = []
    for ev, fb in events:
        clicked = [j for j, item in enumerate(ev.page_ids) if fb.get(item, 0.0) > 0]
        if not clicked or ev.page_idx.size == 0:
            continue
        shown_at = np.asarray(clicked, dtype=np.int64)
        rows = ev.page_idx[shown_at]  # the clicked items' rows among the logged candidates
        weight = 1.0 / np.maximum(exam[np.minimum(shown_at, exam.size - 1)], 1.0 / clip)
        util = []
        for scorer in (challenger, baseline):
            r = _ranks(np.asarray(scorer(ev), dtype=np.float64))[rows]
            gain = np.where(r <= k, w_pos[np.minimum(r, k) - 1], 0.0)
            util.append(float((weight * gain).sum() / w_pos.sum()))
        diffs.append(util[0] - util[1])
    return PairedComparison(np.asarray(diffs, dtype=np.float64))
