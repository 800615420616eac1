"""Chunked-by-parent weights: lossless round trip and margins equal to the dense product."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from strategies.xmr.chunked import ChunkedWeights


def _level(seed: int):
    rng = np.random.default_rng(seed)
    child_ptr = np.array([0, 3, 3, 7, 9])  # parent 1 has no children
    w = sp.random(30, 9, density=0.3, random_state=np.random.default_rng(seed), format="csr",
                  dtype=np.float32)
    x = sp.random(6, 30, density=0.2, random_state=np.random.default_rng(seed + 1), format="csr",
                  dtype=np.float32)
    return rng, child_ptr, w, x


def test_round_trip_is_lossless(tmp_path):
    _, child_ptr, w, _ = _level(0)
    c = ChunkedWeights.from_csr(w, child_ptr)
    assert c.nnz == w.nnz and c.keys[-1] == np.iinfo(np.int64).max
    assert (c.to_csr(child_ptr) != w).nnz == 0
    c.save(tmp_path, "L0")
    back = ChunkedWeights.load(tmp_path, "L0", w.shape[0], mmap=True)
    assert (back.to_csr(child_ptr) != w).nnz == 0
    # still the file's mapped pages, seen as plain ndarrays (no np.memmap overhead per index)
    for name in ("keys", "ptr", "child", "value"):
        arr = getattr(back, name)
        assert type(arr) is np.ndarray and isinstance(arr.base, np.memmap) and not arr.flags.writeable


def test_margins_equal_the_dense_product_under_any_beam():
    _, child_ptr, w, x = _level(1)
    c = ChunkedWeights.from_csr(w, child_ptr)
    full = (x @ w).toarray()
    parents = np.array([[0, 2, -1], [3, 1, 0], [2, -1, -1], [0, 3, 2], [1, 1, 1], [3, 0, -1]])
    nchild = np.diff(child_ptr)
    counts = np.where(parents >= 0, nchild[np.maximum(parents, 0)], 0)
    width = int(counts.sum(axis=1).max())
    slot = np.cumsum(counts, axis=1) - counts + (np.arange(6) * width)[:, None]
    out = c.margins(x, parents, slot, 6 * width).reshape(6, width)
    for q in range(6):
        for j, p in enumerate(parents[q]):
            if p < 0:
                continue
            got = out[q, slot[q, j] - q * width: slot[q, j] - q * width + nchild[p]]
            np.testing.assert_allclose(got, full[q, child_ptr[p]:child_ptr[p + 1]], rtol=1e-6)
        one = np.sort(parents[q][parents[q] >= 0])
        base = np.r_[0, np.cumsum(nchild[one])[:-1]]
        row = x[q]
        m1 = c.margins_one(row.indices, row.data, one, base, int(nchild[one].sum()))
        want = np.concatenate([full[q, child_ptr[p]:child_ptr[p + 1]] for p in one]) if one.size else np.zeros(0)
        np.testing.assert_allclose(m1, want, rtol=1e-6)


def test_pieces_in_any_order_merge_to_the_level():
    # the level split into two blocks of parents, entries shuffled (the piece sorts them) and the
    # blocks merged out of parent order: the same arrays as from_csr
    rng, child_ptr, w, _ = _level(2)
    coo = w.tocoo()
    parent = np.searchsorted(child_ptr, coo.col, side="right") - 1
    pieces = []
    for block in (parent % 2 == 1, parent % 2 == 0):
        idx = rng.permutation(np.flatnonzero(block))
        pieces.append(ChunkedWeights.piece(coo.row[idx].astype(np.int64), coo.col[idx], coo.data[idx],
                                           child_ptr, w.shape[0]))
    got = ChunkedWeights.merge(pieces, w.shape[0])
    ref = ChunkedWeights.from_csr(w, child_ptr)
    for name in ("keys", "ptr", "child", "value"):
        np.testing.assert_array_equal(getattr(got, name), getattr(ref, name), err_msg=name)
    assert (got.to_csr(child_ptr) != w).nnz == 0
