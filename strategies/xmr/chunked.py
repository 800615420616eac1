"""One tree level's matcher weights grouped by parent, for beam search that scores only the beam.

Beam search needs ``x . w_c`` for the children ``c`` of the few nodes left in the beam, not for
every node of the level. Storing the weights *chunked by parent* (the layout PECOS's predict-only
models use) makes that a lookup: for every (parent, feature) pair with a nonzero weight for some
child, the children's weights sit together. A query's margins under a beam node are then a
binary search of ``parent * n_features + feature`` for each of its features and a scatter-add of
the rows found, so the cost follows the beam, not the size of the level.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse as sp

_FIELDS = ("keys", "ptr", "child", "value")
_SENTINEL = np.iinfo(np.int64).max


@dataclass(frozen=True)
class ChunkedWeights:
    """``keys[r] = parent * n_features + feature`` (sorted); its children's local indices and weights
    are ``child[ptr[r]:ptr[r+1]]`` and ``value[ptr[r]:ptr[r+1]]``. ``keys`` ends with a sentinel
    larger than any key, so a binary search never runs off the end."""

    keys: np.ndarray   # int64, sorted, unique, then the sentinel
    ptr: np.ndarray    # int64, len(keys)
    child: np.ndarray  # int32, child's index among its parent's children
    value: np.ndarray  # float32
    n_features: int

    @classmethod
    def from_csr(cls, w: sp.csr_matrix, child_ptr: np.ndarray) -> ChunkedWeights:
        """From a ``(n_features, n_nodes)`` matrix whose node ``c`` is a child of the parent ``p``
        with ``child_ptr[p] <= c < child_ptr[p+1]``."""
        w = sp.csr_matrix(w)
        w.sum_duplicates()
        d = w.shape[0]
        feat = np.repeat(np.arange(d, dtype=np.int64), np.diff(w.indptr))
        node = w.indices.astype(np.int64)
        parent = np.searchsorted(child_ptr, node, side="right") - 1
        key = parent * d + feat
        order = np.argsort(key, kind="stable")  # rows are feature-major, nodes sorted within
        key = key[order]
        first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if key.size else np.empty(0, np.int64)
        return cls(
            keys=np.r_[key[first], _SENTINEL].astype(np.int64),
            ptr=np.r_[first, key.size].astype(np.int64),
            child=(node[order] - child_ptr[parent[order]]).astype(np.int32),
            value=w.data[order].astype(np.float32),
            n_features=d,
        )

    @staticmethod
    def piece(feat: np.ndarray, node: np.ndarray, value: np.ndarray, child_ptr: np.ndarray,
              n_features: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One block of parents' weights ``(feature, node, value)`` in the chunked layout:
        ``(keys, counts, child, value)`` with unique sorted keys (no sentinel) and each key's
        number of children. Entries must already be ordered by (parent, feature, node), as the
        matcher emits them; otherwise they are sorted here. Compact (8 bytes a weight plus 16
        a key), so a level can be kept as pieces while its blocks are trained."""
        node = node.astype(np.int64, copy=False)
        parent = np.searchsorted(child_ptr, node, side="right") - 1
        key = parent * n_features + feat
        child = (node - child_ptr[parent]).astype(np.int32)
        del node
        if key.size > 1 and not bool(np.all((key[1:] > key[:-1])
                                            | ((key[1:] == key[:-1]) & (child[1:] > child[:-1])))):
            order = np.lexsort((child, key))
            key, child, value = key[order], child[order], value[order]
        first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if key.size else np.empty(0, np.int64)
        counts = np.diff(np.r_[first, key.size])
        return key[first], counts, child, value.astype(np.float32, copy=False)

    @classmethod
    def merge(cls, pieces: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
              n_features: int) -> ChunkedWeights:
        """One level from :meth:`piece` s of disjoint sets of parents (in any order): the pieces'
        runs of keys are laid out by parent, one array at a time (the pieces' arrays are
        released as they are used, so the peak is the level plus one array of it)."""
        runs = []  # (parent, piece, first key, end key) of every parent's run of keys
        for i, (keys, _, _, _) in enumerate(pieces):
            par = keys // n_features
            start = np.flatnonzero(np.r_[True, par[1:] != par[:-1]]) if keys.size else np.empty(0, np.int64)
            runs.append(np.stack([par[start], np.full(start.size, i), start, np.r_[start[1:], keys.size]], 1)
                        if keys.size else np.empty((0, 4), np.int64))
        table = np.concatenate(runs) if runs else np.empty((0, 4), np.int64)
        table = table[np.argsort(table[:, 0], kind="stable")].tolist()
        eptr = [np.r_[0, np.cumsum(p[1])] for p in pieces]
        keys = np.concatenate([pieces[i][0][a:b] for _, i, a, b in table] + [np.array([_SENTINEL])])
        counts = np.concatenate([pieces[i][1][a:b] for _, i, a, b in table] + [np.zeros(0, np.int64)])
        ptr = np.r_[0, np.cumsum(counts)].astype(np.int64)
        del counts
        arrays = []
        for field in (2, 3):  # child, then value
            arrays.append(np.concatenate([pieces[i][field][eptr[i][a]:eptr[i][b]] for _, i, a, b in table]
                                         + [np.zeros(0, (np.int32, np.float32)[field - 2])]))
            for j, p in enumerate(pieces):  # drop the pieces' copies of this array
                q = list(p)
                q[field] = np.empty(0, p[field].dtype)
                pieces[j] = (q[0], q[1], q[2], q[3])
        return cls(keys=keys.astype(np.int64), ptr=ptr, child=arrays[0], value=arrays[1],
                   n_features=n_features)

    def to_csr(self, child_ptr: np.ndarray) -> sp.csr_matrix:
        """The ``(n_features, n_nodes)`` matrix back (for inspection and tests)."""
        counts = np.diff(self.ptr)
        key = np.repeat(self.keys[:-1], counts)
        node = child_ptr[key // self.n_features] + self.child
        out = sp.csr_matrix((self.value, (key % self.n_features, node)),
                            shape=(self.n_features, int(child_ptr[-1])))
        out.sort_indices()
        return out

    @property
    def nnz(self) -> int:
        return int(self.value.size)

    def _entries(self, want: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For searched ``(parent, feature)`` keys ``want``: the positions in ``want`` that have
        weights (``hit``), the flat indices of those weights (``entry``, grouped per hit) and how
        many each hit has (``count``)."""
        # ndarray methods rather than numpy's functions: the function wrappers cost ~1 us a
        # call, a visible share of a single query's ~15 calls per level
        pos = self.keys.searchsorted(want)
        hit = (self.keys.take(pos) == want).nonzero()[0]  # the sentinel keeps pos in range
        row = pos.take(hit)
        start = self.ptr.take(row)
        count = self.ptr.take(row + 1) - start
        ends = count.cumsum()
        entry = np.arange(int(ends[-1]) if ends.size else 0) + (start - ends + count).repeat(count)
        return hit, entry, count

    def margins(self, x: sp.csr_matrix, parents: np.ndarray, slot_start: np.ndarray,
                size: int) -> np.ndarray:
        """``x_q . w_c`` for the children ``c`` of each beam node, without bias.

        ``parents`` is ``int64[n, b]`` (-1: empty slot) and the children of ``parents[q, j]``
        land at ``slot_start[q, j] + child`` of the returned flat ``float64[size]`` array.
        """
        if self.keys.size == 1 or x.nnz == 0:
            return np.zeros(size)
        pflat = parents.ravel()
        # (query, beam node) pairs ordered by node, so the searched keys arrive nearly sorted and
        # the binary searches walk the same few cache lines
        order = np.argsort(pflat, kind="stable")
        order = order[np.searchsorted(pflat[order], 0):]  # drop empty slots (-1)
        pq = order // parents.shape[1]
        cnt = x.indptr[pq + 1] - x.indptr[pq]
        ends = np.cumsum(cnt)
        total = int(ends[-1]) if ends.size else 0
        if total == 0:
            return np.zeros(size)
        nzi = np.arange(total) + np.repeat(x.indptr[pq] - ends + cnt, cnt)
        pair = np.repeat(order, cnt)
        hit, entry, count = self._entries(pflat[pair] * self.n_features + x.indices[nzi])
        if hit.size == 0:
            return np.zeros(size)
        target = np.repeat(slot_start.ravel()[pair[hit]], count) + self.child[entry]
        vals = self.value[entry] * np.repeat(x.data[nzi[hit]], count)
        return np.bincount(target, weights=vals, minlength=size)

    def margins_one(self, indices: np.ndarray, data: np.ndarray, parents: np.ndarray,
                    base: np.ndarray, size: int) -> np.ndarray:
        """:meth:`margins` for one query (features ``indices``/``data``) and sorted ``parents``,
        whose children land at ``base[j] + child``: the same arithmetic in fewer, smaller calls."""
        m = indices.size
        if self.keys.size == 1 or m == 0:
            return np.zeros(size)
        hit, entry, count = self._entries((parents[:, None] * self.n_features + indices).ravel())
        if hit.size == 0:
            return np.zeros(size)
        q, r = np.divmod(hit, m)
        target = base.take(q).repeat(count) + self.child.take(entry)
        vals = self.value.take(entry) * data.take(r).repeat(count)
        return np.bincount(target, weights=vals, minlength=size)

    # ------------------------------------------------------------------ persistence
    def save(self, directory: Path, prefix: str) -> None:
        for name in _FIELDS:
            np.save(directory / f"{prefix}_{name}.npy", getattr(self, name), allow_pickle=False)

    @classmethod
    def load(cls, directory: Path, prefix: str, n_features: int, mmap: bool = False) -> ChunkedWeights:
        mode: Literal["r"] | None = "r" if mmap else None
        # a memory-mapped array seen as a plain ndarray (same mapped pages, kept alive by its
        # base): np.memmap's Python-level __getitem__ / __array_finalize__ cost ~1 us on every
        # index of a single-query beam search, ~5% of it
        arrs = {name: np.load(directory / f"{prefix}_{name}.npy", mmap_mode=mode, allow_pickle=False).view(np.ndarray)
                for name in _FIELDS}
        return cls(**arrs, n_features=n_features)
