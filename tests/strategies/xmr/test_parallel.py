"""Row-split sparse products and the threaded training paths: the same numbers as one thread."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

from strategies.xmr.indexer import balanced_kmeans_codes
from strategies.xmr.model import XRConfig, XRModel, pifa
from strategies.xmr.parallel import RowSplit, ordered_map, row_split
from tests.strategies.xmr.test_model import _synthetic


def test_row_split_covers_every_row_with_balanced_nonzeros():
    m = sp.random(50, 30, density=0.2, format="csr", random_state=np.random.default_rng(0))
    parts = row_split(m, 3)
    assert [r0 for r0, _ in parts] == sorted(r0 for r0, _ in parts) and parts[0][0] == 0
    assert sum(p.shape[0] for _, p in parts) == 50
    assert max(p.nnz for _, p in parts) <= m.nnz / 3 + np.diff(m.indptr).max()
    assert (sp.vstack([p for _, p in parts]) != m).nnz == 0
    assert np.shares_memory(parts[1][1].data, m.data)  # views of m's arrays, not copies


def test_row_split_product_is_bitwise_the_single_product():
    rng = np.random.default_rng(1)
    m = sp.random(400, 300, density=0.05, format="csr", random_state=rng, dtype=np.float32)
    v = rng.standard_normal((300, 3)).astype(np.float32)
    with ThreadPoolExecutor(2) as pool:
        split = RowSplit(m, pool, 2)
        assert len(split.blocks) == 2
        out = split @ v
        vec = split @ v[:, 0].astype(np.float64)
    assert out.dtype == np.float32 and np.array_equal(out, m @ v)
    assert vec.dtype == np.float64 and np.array_equal(vec, m @ v[:, 0].astype(np.float64))
    assert np.array_equal(RowSplit(m, None, 2) @ v, m @ v)


def test_threads_do_not_change_the_tree_or_the_model():
    x, y, _ = _synthetic(3, n_labels=200, n=1200)
    emb = pifa(x, y)
    one, d1 = balanced_kmeans_codes(emb, max_leaf_size=10, seed=5)
    two, d2 = balanced_kmeans_codes(emb, max_leaf_size=10, seed=5, threads=2)
    assert d1 == d2 == 5 and np.array_equal(one, two)
    m1 = XRModel(XRConfig(branching=4, max_leaf_size=10, seed=5)).fit(x, y)
    m2 = XRModel(XRConfig(branching=4, max_leaf_size=10, seed=5, threads=2)).fit(x, y)
    assert np.array_equal(m1.tree.label_order, m2.tree.label_order)
    for w1, w2 in zip(m1.weights, m2.weights, strict=True):
        assert (w1 != w2).nnz == 0
    i1, s1 = m1.predict(x[:100], 10)
    i2, s2 = m2.predict(x[:100], 10)
    assert np.array_equal(i1, i2) and np.array_equal(s1, s2)


def test_ordered_map_keeps_order_and_bounds_the_work_in_flight():
    import threading
    running, peak, lock = [0], [0], threading.Lock()

    def slow_square(i: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        import time
        time.sleep(0.002 * (i % 3))
        with lock:
            running[0] -= 1
        return i * i

    with ThreadPoolExecutor(4) as pool:
        out = list(ordered_map(slow_square, range(20), pool, ahead=2))
    assert out == [i * i for i in range(20)] and peak[0] <= 3
    assert list(ordered_map(slow_square, range(5), None)) == [0, 1, 4, 9, 16]
