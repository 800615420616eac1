"""Compiled segment sums of the matchers' Newton-CG (see :mod:`strategies.xmr.matcher`).

Every CG step of a level sums (rows or local features) x children arrays per problem
(segment): ``numpy.add.reduceat`` along axis 0, which for 2-D arrays walks the rows one binary
add at a time and ran at a fraction of memory bandwidth (a third of a level's time at 100k
labels). :func:`segment_sums` forms the same sums: per segment and column, the first row, then
each following row added in order, in the array's own dtype; :func:`segment_dots` is
``segment_sums(a * b)`` with each product rounded to the dtype before it is added, as numpy
rounds the product array, without materializing it. So the results are bit for bit numpy's.
Compiled with ``cache=True`` and ``nogil=True`` (blocks of a level are solved on threads).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["segment_dots", "segment_sums"]


_BLOCK = 128  # numpy's PW_BLOCKSIZE


@njit(cache=True, nogil=True)
def _pairwise(a, b, lo, n, dot, res):  # pragma: no cover (compiled)
    """numpy's ``pairwise_sum`` of rows ``lo:lo + n`` (of ``a * b`` if ``dot``), every column
    at once, into ``res``, in the arrays' dtype: below 8 terms one by one from -0.0, up to 128
    in 8 interleaved partial sums joined as ((0+1)+(2+3))+((4+5)+(6+7)) plus the tail, beyond
    that the two halves (split at a multiple of 8) summed recursively and added."""
    m = a.shape[1]
    if n < 8:
        for k in range(m):
            res[k] = -0.0
        for i in range(lo, lo + n):
            for k in range(m):
                res[k] += a[i, k] * b[i, k] if dot else a[i, k]
        return
    if n <= _BLOCK:
        r = np.empty((8, m), dtype=a.dtype)
        for j in range(8):
            for k in range(m):
                r[j, k] = a[lo + j, k] * b[lo + j, k] if dot else a[lo + j, k]
        i = 8
        while i < n - (n % 8):
            for j in range(8):
                for k in range(m):
                    r[j, k] += a[lo + i + j, k] * b[lo + i + j, k] if dot else a[lo + i + j, k]
            i += 8
        for k in range(m):
            res[k] = ((r[0, k] + r[1, k]) + (r[2, k] + r[3, k])) + ((r[4, k] + r[5, k]) + (r[6, k] + r[7, k]))
        while i < n:
            for k in range(m):
                res[k] += a[lo + i, k] * b[lo + i, k] if dot else a[lo + i, k]
            i += 1
        return
    n2 = n // 2
    n2 -= n2 % 8
    left = np.empty(m, dtype=a.dtype)
    _pairwise(a, b, lo, n2, dot, left)
    _pairwise(a, b, lo + n2, n - n2, dot, res)
    for k in range(m):
        res[k] = left[k] + res[k]


@njit(cache=True, nogil=True)
def _segments(a, b, starts, out, dot):  # pragma: no cover (compiled)
    """``reduceat`` along axis 0: per segment and column, the first row plus the pairwise sum
    of the others."""
    n, m = a.shape
    n_seg = starts.size
    rest = np.empty(m, dtype=a.dtype)
    for s in range(n_seg):
        lo = starts[s]
        hi = starts[s + 1] if s + 1 < n_seg else n
        for k in range(m):
            out[s, k] = a[lo, k] * b[lo, k] if dot else a[lo, k]
        if hi - lo > 1:
            _pairwise(a, b, lo + 1, hi - lo - 1, dot, rest)
            for k in range(m):
                out[s, k] += rest[k]


def _fits(a: np.ndarray, starts: np.ndarray) -> bool:
    """Whether the compiled loop applies: a nonempty 2-D float array and strictly increasing
    starts (``reduceat``'s empty-segment rule is not reproduced)."""
    return (a.ndim == 2 and a.shape[0] > 0 and a.dtype in (np.float32, np.float64)
            and starts.size > 0 and int(starts[0]) >= 0 and int(starts[-1]) < a.shape[0]
            and bool(np.all(starts[1:] > starts[:-1])))


def segment_sums(a: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """``np.add.reduceat(a, starts, axis=0)``, bit for bit."""
    if not _fits(a, starts):
        return np.add.reduceat(a, starts, axis=0)
    out = np.empty((starts.size, a.shape[1]), dtype=a.dtype)
    a = np.ascontiguousarray(a)
    _segments(a, a, np.ascontiguousarray(starts, dtype=np.int64), out, False)
    return out


def segment_dots(a: np.ndarray, b: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """``np.add.reduceat(a * b, starts, axis=0)``, bit for bit, without the product array."""
    if a.dtype != b.dtype or a.shape != b.shape or not _fits(a, starts):
        return np.add.reduceat(a * b, starts, axis=0)
    out = np.empty((starts.size, a.shape[1]), dtype=a.dtype)
    _segments(np.ascontiguousarray(a), np.ascontiguousarray(b), np.ascontiguousarray(starts, dtype=np.int64),
              out, True)
    return out
