"""Reader for LETOR / SVMlight ranking files (``label qid:N i:v ...``), e.g. MSLR-WEB10K.

Rows of one query must be contiguous (as in every LETOR release); absent features are 0, as the
format defines. Bad lines are reported with file and line number.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ltrr.errors import DataError


@dataclass(frozen=True)
class LetorData:
    """Dense ``X float32[n, n_features]``, labels, query ids per row and rows per query."""

    X: np.ndarray
    y: np.ndarray
    qid: np.ndarray
    groups: np.ndarray


def load_letor(path: str | os.PathLike, n_features: int | None = None) -> LetorData:
    """Read a LETOR file; feature ``i`` (1-based in the file) is column ``i - 1``."""
    path = Path(path)
    labels, qids, rows, cols, vals = [], [], [], [], []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            body = line.split("#", 1)[0].split()
            if not body:
                continue
            try:
                labels.append(float(body[0]))
                key, _, q = body[1].partition(":")
                if key != "qid":
                    raise ValueError(f"expected qid:N, got {body[1]!r}")
                qids.append(int(q))
                r = len(labels) - 1
                for tok in body[2:]:
                    i, _, v = tok.partition(":")
                    cols.append(int(i) - 1)
                    vals.append(float(v))
                    rows.append(r)
            except (ValueError, IndexError) as exc:
                raise DataError(f"{path}:{lineno}: not a LETOR line ({exc})") from None
    width = (max(cols) + 1 if cols else 0) if n_features is None else n_features
    X = np.zeros((len(labels), width), dtype=np.float32)
    X[np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)] = np.asarray(vals, dtype=np.float32)
    qid = np.asarray(qids, dtype=np.int64)
    change = np.flatnonzero(np.r_[True, qid[1:] != qid[:-1]])
    if np.unique(qid[change]).size != change.size:
        raise DataError(f"{path}: rows of a query are not contiguous")
    groups = np.diff(np.r_[change, qid.size])
    return LetorData(X, np.asarray(labels, dtype=np.float32), qid, groups)
