"""The compiled k-means rounds: cells index every (node, feature) pair; a round is the scipy
products' arithmetic (same sums, same order), so its sides equal the matrix formulation's."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from strategies.xmr.kmeans_kernel import build_cells, split_round


def _level(seed: int, n: int = 60, d: int = 12, n_nodes: int = 4):
    emb = sp.random(n, d, density=0.3, format="csr", dtype=np.float32, random_state=np.random.default_rng(seed))
    emb.sort_indices()
    grp = np.random.default_rng(seed + 1).integers(0, n_nodes, size=n)
    order = np.argsort(grp, kind="stable")
    node_start = np.r_[0, np.cumsum(np.bincount(grp, minlength=n_nodes))].astype(np.int64)
    return emb, grp, order, node_start


def _cells(emb, order, node_start, g0=0, g1=None):
    n_nodes = node_start.size - 1
    pos_ptr = np.r_[0, np.cumsum(np.diff(emb.indptr)[order])].astype(np.int64)
    pos_cell = np.full(emb.nnz, -1, dtype=np.int32)
    pos_data = np.full(emb.nnz, np.nan, dtype=np.float32)
    n_cells = np.zeros(n_nodes, dtype=np.int64)
    fmap = np.full(emb.shape[1], -1, dtype=np.int32)
    build_cells(emb.indptr, emb.indices, emb.data, order, node_start, g0, n_nodes if g1 is None else g1, fmap,
                np.empty(emb.shape[1], dtype=np.int32), pos_ptr, pos_cell, pos_data, n_cells)
    assert (fmap == -1).all()  # the scratch map is clean again
    return pos_ptr, pos_cell, pos_data, n_cells


def test_cells_number_each_nodes_distinct_features_in_order_by_position():
    emb, grp, order, node_start = _level(4)
    pos_ptr, pos_cell, pos_data, n_cells = _cells(emb, order, node_start)
    ep = emb[order]  # the labels in position order, features sorted
    np.testing.assert_array_equal(pos_ptr, ep.indptr)
    np.testing.assert_array_equal(pos_data, ep.data)
    node = grp[order][np.repeat(np.arange(ep.shape[0]), np.diff(ep.indptr))]
    for g in range(4):
        feats = np.unique(ep.indices[node == g])
        assert n_cells[g] == feats.size
        np.testing.assert_array_equal(pos_cell[node == g], np.searchsorted(feats, ep.indices[node == g]))


def test_cells_of_a_node_range_leave_the_other_nodes_alone():
    emb, grp, order, node_start = _level(6)
    pos_ptr, pos_cell, pos_data, n_cells = _cells(emb, order, node_start, 1, 3)
    ep = emb[order]
    node = grp[order][np.repeat(np.arange(ep.shape[0]), np.diff(ep.indptr))]
    inside = (node >= 1) & (node < 3)
    assert (pos_cell[inside] >= 0).all() and (pos_cell[~inside] == -1).all()
    assert not np.isnan(pos_data[inside]).any() and np.isnan(pos_data[~inside]).all()
    assert n_cells[0] == 0 and n_cells[3] == 0 and (n_cells[1:3] > 0).all()


def _round_with_scipy(emb, grp, order, node_start, members):
    """The matrix formulation a round replaces: centroid sums, norms and scores as float64 sparse
    products, the balanced split by a global stable sort."""
    n = grp.size
    node_p = grp[order]
    ep = sp.csr_matrix(emb[order], dtype=np.float64)
    n_nodes = node_start.size - 1
    sides = np.stack([members == 0, members == 1], 1).astype(np.float64)
    score = np.zeros(n)
    for g in range(n_nodes):
        s, e = node_start[g], node_start[g + 1]
        block = ep[s:e]
        lr = block.T @ sides[s:e]  # per feature; features outside the node are zero
        norms = np.maximum(np.sqrt((lr * lr).sum(axis=0)), 1e-12)
        score[s:e] = block @ (lr[:, 0] / norms[0] - lr[:, 1] / norms[1])
    by_score = np.argsort(-score, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[by_score[np.argsort(node_p[by_score], kind="stable")]] = np.arange(n) - node_start[node_p]
    half = (np.diff(node_start) + 1) // 2
    return (rank >= half[node_p]).astype(np.int8)


def test_a_round_splits_each_node_in_balanced_halves_as_the_products_do():
    emb, grp, order, node_start = _level(8, n=200, d=30)
    pos_ptr, pos_cell, pos_data, n_cells = _cells(emb, order, node_start)
    members = np.random.default_rng(9).integers(-1, 2, size=grp.size).astype(np.int8)
    side = np.full(grp.size, -1, dtype=np.int8)
    big = emb.nnz
    changed = split_round(pos_ptr, pos_data, pos_cell, node_start, n_cells, 0, 4, members, side,
                          np.empty(big), np.empty(big), np.empty(grp.size))
    assert changed == grp.size  # every side was -1
    np.testing.assert_array_equal(side, _round_with_scipy(emb, grp, order, node_start, members))
    sizes = np.diff(node_start)
    left = np.add.reduceat((side == 0).astype(np.int64), node_start[:-1])
    np.testing.assert_array_equal(left, (sizes + 1) // 2)
    # a second round from its own sides (members is side) changes only the labels that moved
    before = side.copy()
    changed = split_round(pos_ptr, pos_data, pos_cell, node_start, n_cells, 0, 4, side, side,
                          np.empty(big), np.empty(big), np.empty(grp.size))
    np.testing.assert_array_equal(side, _round_with_scipy(emb, grp, order, node_start, before))
    assert changed == int((side != before).sum())
