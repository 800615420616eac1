"""Sparse matrix products split by rows over a thread pool.

scipy's sparse kernels release the GIL, so two threads multiplying two halves of a matrix's rows
run on two cores. Each output row is computed exactly as in one product (same terms, same order),
so results do not depend on the number of threads.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import scipy.sparse as sp

_T = TypeVar("_T")
_R = TypeVar("_R")


def ordered_map(fn: Callable[[_T], _R], items: Iterable[_T], pool: ThreadPoolExecutor | None,
                ahead: int = 2) -> Iterator[_R]:
    """``map(fn, items)`` on ``pool``'s threads, results in order, at most ``ahead`` items
    computed beyond the one consumed (so memory stays bounded, unlike ``Executor.map``)."""
    if pool is None:
        yield from map(fn, items)
        return
    pending: deque[Future[_R]] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) > ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def row_split(m: sp.csr_matrix, parts: int) -> list[tuple[int, sp.csr_matrix]]:
    """``m`` cut into at most ``parts`` row ranges of about equal nonzeros: ``(first row, rows)``
    each, sharing ``m``'s data and indices arrays."""
    bounds = np.searchsorted(m.indptr, np.linspace(0, m.nnz, parts + 1)[1:-1]).tolist()
    edges = sorted({0, *bounds, m.shape[0]})
    out = []
    for r0, r1 in zip(edges[:-1], edges[1:], strict=True):
        a, b = int(m.indptr[r0]), int(m.indptr[r1])
        part = sp.csr_matrix((r1 - r0, m.shape[1]), dtype=m.dtype)
        # set as attributes: the constructor would copy views smaller than half their base
        part.data, part.indices, part.indptr = m.data[a:b], m.indices[a:b], m.indptr[r0:r1 + 1] - a
        out.append((r0, part))
    return out


class RowSplit:
    """``m @ v`` for a CSR ``m``, computed over row ranges of ``m`` on ``pool`` (one range, no
    pool: a plain product)."""

    def __init__(self, m: sp.csr_matrix, pool: ThreadPoolExecutor | None, parts: int):
        self.shape = m.shape
        self.dtype = m.dtype
        self.pool = pool
        self.blocks = row_split(m, parts) if pool is not None and parts > 1 else [(0, m)]

    def __matmul__(self, v: np.ndarray) -> np.ndarray:
        if len(self.blocks) == 1 or self.pool is None:
            return self.blocks[0][1] @ v
        out = np.empty((self.shape[0],) + v.shape[1:], dtype=np.result_type(self.dtype, v.dtype))

        def one(block: tuple[int, sp.csr_matrix]) -> None:
            r0, m = block
            out[r0:r0 + m.shape[0]] = m @ v

        list(self.pool.map(one, self.blocks))
        return out
