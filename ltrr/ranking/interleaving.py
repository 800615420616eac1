"""Team-draft interleaving: compare two rankers live on the same traffic.

Radlinski, Kurup & Joachims (2008): rankers A and B take turns, like captains picking teams —
whoever has picked fewer items so far (a coin flip on ties) adds its highest-ranked item not yet
on the page. Each shown item remembers its team; a click credits that team. Per query the ranker
with more credited clicks wins; over many queries a two-sided binomial sign test on the wins
(ties dropped) says whether the preference is significant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

from ltrr.errors import DataError

TEAM_A, TEAM_B = 0, 1


def team_draft(ranking_a: np.ndarray, ranking_b: np.ndarray, k: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Interleave two rankings of item ids into a page of at most ``k`` items.

    Returns ``(page int64[m], team int8[m])`` with ``team`` 0 for A and 1 for B, ``m <= k``
    (fewer when the two rankings together hold fewer distinct items).
    """
    a = np.asarray(ranking_a, dtype=np.int64)
    b = np.asarray(ranking_b, dtype=np.int64)
    if k < 0:
        raise DataError(f"team_draft: k must be >= 0; got {k}")
    page: list[int] = []
    team: list[int] = []
    seen: set[int] = set()
    ia = ib = 0
    n_a = n_b = 0
    while len(page) < k:
        while ia < a.size and int(a[ia]) in seen:
            ia += 1
        while ib < b.size and int(b[ib]) in seen:
            ib += 1
        if ia >= a.size and ib >= b.size:
            break
        pick_a = n_a < n_b or (n_a == n_b and bool(rng.integers(2) == 0))
        if pick_a and ia >= a.size:
            pick_a = False
        elif not pick_a and ib >= b.size:
            pick_a = True
        item = int(a[ia]) if pick_a else int(b[ib])
        page.append(item)
        team.append(TEAM_A if pick_a else TEAM_B)
        seen.add(item)
        n_a += pick_a
        n_b += not pick_a
    return np.asarray(page, dtype=np.int64), np.asarray(team, dtype=np.int8)


def credit(team: np.ndarray, clicks: np.ndarray) -> tuple[int, int]:
    """Clicks credited to A and to B on one interleaved page (``clicks`` bool per position)."""
    t = np.asarray(team)
    c = np.asarray(clicks, dtype=bool)[: t.size]
    return int((c & (t == TEAM_A)).sum()), int((c & (t == TEAM_B)).sum())


@dataclass(frozen=True)
class InterleavingResult:
    """Outcome of an interleaving experiment over many queries."""

    wins_a: int
    wins_b: int
    ties: int
    p_value: float

    @property
    def winner(self) -> str:
        if self.wins_a == self.wins_b:
            return "tie"
        return "A" if self.wins_a > self.wins_b else "B"

    @property
    def delta(self) -> float:
        """Preference in [-1, 1]: (wins_A - wins_B) / queries, positive when A is preferred."""
        n = self.wins_a + self.wins_b + self.ties
        return (self.wins_a - self.wins_b) / n if n else 0.0

    def to_dict(self) -> dict[str, float | int | str]:
        return {"wins_a": self.wins_a, "wins_b": self.wins_b, "ties": self.ties,
                "p_value": self.p_value, "winner": self.winner, "delta": self.delta}


def sign_test(credits_a: np.ndarray, credits_b: np.ndarray) -> InterleavingResult:
    """Per-query wins from credited clicks, and a two-sided binomial sign test (ties dropped)."""
    ca = np.asarray(credits_a)
    cb = np.asarray(credits_b)
    if ca.shape != cb.shape:
        raise DataError(f"sign_test needs equally long credit arrays; got {ca.shape} and {cb.shape}")
    wa, wb = int((ca > cb).sum()), int((cb > ca).sum())
    ties = int(ca.size - wa - wb)
    p = float(binomtest(wa, wa + wb, 0.5).pvalue) if wa + wb else 1.0
    return InterleavingResult(wa, wb, ties, p)
