"""The in-memory, columnar form of a foreign bandit log: one logged action per round.

Open Bandit Dataset CSVs, Vowpal Wabbit DSJSON logs and generic column-mapped tables all read
into an :class:`ActionLog`, the arrays Open Bandit Pipeline's ``bandit_feedback`` holds:
``action``, ``position``, ``reward``, ``pscore``, ``context`` and ``action_context``. ltrr's own
plan logs stay in :mod:`ltrr.offline.logs` (they stream; these are held in memory).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ltrr.errors import DataError


@dataclass(frozen=True)
class ActionLog:
    """Logged bandit feedback with one action per round.

    Attributes
    ----------
    path, format
        Where it came from and how it was read (``obd``, ``dsjson``, ``columns``).
    action
        ``int64[n]`` action indices in ``[0, n_actions)``.
    reward, pscore
        ``float64[n]`` reward and the logging policy's probability of the logged action.
    position
        ``int64[n]`` slot of the logged action in ``[0, len_list)`` (zeros for one slot).
    context
        ``float64[n, d]`` context features for the reward model.
    action_context
        ``float64[n_actions, d_a]`` action features, or None (one-hot actions, as OBP).
    logged_pmf
        ``float64[n, n_actions]`` the logger's whole distribution when the log holds it
        (DSJSON's ``p``), else None.
    lines
        ``int64[n]`` each round's place in the file, for messages (``{path}:{where} {lines[i]}``).
    where
        ``"line"`` (1-based text line) or ``"row"`` (0-based table row).
    labels
        The original action ids when they were mapped to indices, else None.
    raw
        DSJSON only: each round's JSON line (a VW model target re-reads them).
    """

    path: str
    format: str
    action: np.ndarray
    reward: np.ndarray
    pscore: np.ndarray
    position: np.ndarray
    context: np.ndarray
    n_actions: int
    len_list: int
    action_context: np.ndarray | None = None
    logged_pmf: np.ndarray | None = None
    lines: np.ndarray | None = None
    where: str = "line"
    labels: tuple[str, ...] | None = None
    raw: tuple[str, ...] | None = field(default=None, repr=False)
    skipped: int = 0

    def __len__(self) -> int:
        return int(self.action.shape[0])

    def locate(self, i: int) -> str:
        """``file:line N`` (or ``file:row N``) of round ``i``."""
        place = int(self.lines[i]) if self.lines is not None else i
        return f"{self.path}:{self.where} {place}"

    def validate(self) -> ActionLog:
        """Raise DataError naming the file and row of the first bad value; return self."""
        n = len(self)
        if n == 0:
            raise DataError(f"{self.path}: the log is empty (no rounds); nothing to evaluate")
        for name in ("reward", "pscore", "position"):
            arr = getattr(self, name)
            if arr.shape != (n,):
                raise DataError(f"{self.path}: {name} has shape {arr.shape}, expected ({n},)")
        bad = ~((self.pscore > 0.0) & (self.pscore <= 1.0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{self.locate(i)}: propensity {float(self.pscore[i])!r} is outside (0, 1] "
                            f"({int(bad.sum())} of {n} rounds are)")
        bad = ~np.isfinite(self.reward)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{self.locate(i)}: reward {float(self.reward[i])!r} is not a finite number")
        bad = (self.action < 0) | (self.action >= self.n_actions)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{self.locate(i)}: action {int(self.action[i])} is outside [0, {self.n_actions})")
        if self.context.shape[0] != n or not np.isfinite(self.context).all():
            rows = ~np.isfinite(self.context).all(axis=1) if self.context.shape[0] == n else np.ones(n, bool)
            i = int(np.flatnonzero(rows)[0])
            raise DataError(f"{self.locate(i)}: context features are not all finite numbers")
        return self

    def rows_of(self, idx: np.ndarray) -> ActionLog:
        """The rounds ``idx`` (a fold or a block), as a new log."""
        from dataclasses import replace

        take = (lambda a: None if a is None else a[idx])  # noqa: E731
        return replace(self, action=self.action[idx], reward=self.reward[idx], pscore=self.pscore[idx],
                       position=self.position[idx], context=self.context[idx],
                       logged_pmf=take(self.logged_pmf), lines=take(self.lines),
                       raw=None if self.raw is None else tuple(self.raw[i] for i in np.asarray(idx)))


def dense_rank(values: np.ndarray) -> np.ndarray:
    """0-based dense rank (``scipy.stats.rankdata(v, "dense") - 1``, as OBP maps positions)."""
    _, inverse = np.unique(values, return_inverse=True)
    return inverse.ravel().astype(np.int64)


def label_encode(values: npt.ArrayLike) -> np.ndarray:
    """Codes of the sorted distinct values (scikit-learn's ``LabelEncoder``)."""
    _, inverse = np.unique(np.asarray(values), return_inverse=True)
    return inverse.ravel().astype(np.int64)


def one_hot_drop_first(values: np.ndarray) -> np.ndarray:
    """``float64[n, k-1]`` indicators of the sorted distinct values but the first
    (``pandas.get_dummies(drop_first=True)``); missing values (None) are all zeros."""
    vals = np.asarray(values, dtype=object)
    present = np.array([v is not None for v in vals], dtype=bool)
    cats, inverse = np.unique(vals[present].astype(str), return_inverse=True)
    out = np.zeros((vals.shape[0], max(len(cats) - 1, 0)))
    rows, codes = np.flatnonzero(present), inverse.ravel()
    keep = codes > 0
    out[rows[keep], codes[keep] - 1] = 1.0
    return out
