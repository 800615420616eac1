"""Hierarchical spherical k-means indexer: the label tree of the XMR model.

Labels (items) are embedded (PIFA: the normalized sum of the features of the queries that clicked
them) and split recursively by *balanced* spherical 2-means, as PECOS does (each node's half
closer to the left centroid than to the right one goes left): a binary tree of depth
``ceil(log2(n_labels / max_leaf_size))`` whose leaves hold at most about ``max_leaf_size`` labels.
Its levels are then grouped ``branching`` at a time into the B-ary tree the matchers learn, so
consecutive leaf clusters (siblings in the binary tree, hence similar) share a parent.

Every node of one depth is split at once (vectorized across nodes): the (node, feature) cells
of the embeddings' nonzeros are indexed once per depth, after which a k-means iteration is a few
passes of ``bincount`` over the nonzeros; centroids stay sparse, so memory follows the
embeddings' nonzeros, never nodes x features.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from strategies.xmr.parallel import RowSplit


@dataclass(frozen=True)
class ClusterTree:
    """A tree over labels, stored level by level.

    ``child_ptr[t]`` has one entry per node of level ``t`` plus one: the children of node ``p`` of
    level ``t`` are nodes ``child_ptr[t][p]:child_ptr[t][p+1]`` of level ``t+1``. Level 0 is the
    root; the last level's nodes are the labels, and ``label_order[j]`` is the label (item row)
    of bottom node ``j``.
    """

    child_ptr: tuple[np.ndarray, ...]
    label_order: np.ndarray

    @property
    def n_levels(self) -> int:
        """Levels below the root (one matcher each)."""
        return len(self.child_ptr)

    def level_sizes(self) -> list[int]:
        return [1] + [int(cp[-1]) for cp in self.child_ptr]

    def parents(self, t: int) -> np.ndarray:
        """Parent (a node of level ``t``) of every node of level ``t+1``."""
        cp = self.child_ptr[t]
        return np.repeat(np.arange(cp.size - 1), np.diff(cp))

    def to_json(self) -> dict:
        return {"child_ptr": [cp.tolist() for cp in self.child_ptr]}


def _row_normalize(m: sp.csr_matrix, dtype=np.float64, copy: bool = True) -> sp.csr_matrix:
    """Rows scaled to unit L2 norm (a copy, in ``dtype``; ``copy=False`` scales ``m`` itself if it
    is already a CSR matrix of ``dtype``)."""
    m = sp.csr_matrix(m, dtype=dtype, copy=copy)
    sq = np.bincount(np.repeat(np.arange(m.shape[0]), np.diff(m.indptr)),
                     weights=m.data.astype(np.float64) ** 2, minlength=m.shape[0])
    norms = np.sqrt(sq)
    norms[norms == 0] = 1.0
    m.data /= np.repeat(norms, np.diff(m.indptr)).astype(dtype)
    return m


def balanced_kmeans_codes(emb: sp.csr_matrix, max_leaf_size: int, seed: int,
                          iters: int = 20, tol: float = 0.002,
                          threads: int = 1, own: bool = False) -> tuple[np.ndarray, int]:
    """Leaf cluster of every label from recursive balanced spherical 2-means.

    Each split runs at most ``iters`` rounds and stops early once at most ``tol`` of the labels
    change sides in a round. ``threads`` share the sparse products of every round (the result
    does not depend on it). ``own``: the caller hands ``emb`` over, so it is normalized in
    place instead of copied (the same values; one copy of the embeddings less).

    Returns ``(codes, depth)``: ``codes[l]`` in ``[0, 2**depth)``; the two children of binary
    node ``g`` are ``2g`` and ``2g+1``, so leaf codes that share a prefix are close in the tree.
    """
    emb = _row_normalize(emb, np.float32, copy=not own)
    n, d = emb.shape
    if n <= max_leaf_size:
        return np.zeros(n, dtype=np.int64), 0
    depth = max(1, math.ceil(math.log2(n / max_leaf_size)))
    while depth > 0 and 2 ** depth > n:
        depth -= 1
    rng = np.random.default_rng(seed)
    grp = np.zeros(n, dtype=np.int64)
    emb.sort_indices()  # each label's features in order: the cells' entries come out sorted
    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    try:
        for level in range(depth):
            side = _split_level(grp, emb, level, rng, iters, tol, pool, threads)
            grp = grp * 2 + side
    finally:
        if pool is not None:
            pool.shutdown()
    return grp, depth


def _split_level(grp: np.ndarray, emb: sp.csr_matrix, level: int, rng: np.random.Generator,
                 iters: int, tol: float, pool: ThreadPoolExecutor | None, threads: int) -> np.ndarray:
    """Side (0 left, 1 right) of every label in the balanced 2-means split of its node.

    The nonzeros' (node, feature) cells are indexed once per level, as two sparse matrices:
    ``cells`` (cells x labels) sums the members of each side into the centroids, ``labels``
    (labels x cells) scores each label against its node's centroids. Centroids stay sparse, so
    memory follows the embeddings' nonzeros, never nodes x features.
    """
    n = grp.size
    n_nodes = 2 ** level
    sizes = np.bincount(grp, minlength=n_nodes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    # labels are handled in node order (position p holds label order[p]; a node's labels are
    # contiguous, in label order), so the products below touch one node's entries at a time
    order = np.argsort(grp, kind="stable")
    node_p = grp[order]
    # two distinct random members of every node seed its two centroids
    a = rng.integers(0, sizes)
    b = (a + 1 + rng.integers(0, np.maximum(sizes - 1, 1))) % sizes
    side = np.full(n, -1, dtype=np.int64)
    members = np.full(n, -1, dtype=np.int64)  # the two seeds start as the sides' only members
    members[starts + a] = 0
    members[starts + b] = 1
    rank_base = np.repeat(starts, sizes)
    half = ((sizes + 1) // 2)[node_p]
    small = node_p.astype(np.int16 if n_nodes < 2 ** 15 else np.int32)
    cells, labels, per_node = _cell_matrices(emb, order, node_p, np.r_[starts, n])
    n_cells = cells.shape[0]
    node_sum = sp.csr_matrix((np.ones(n_cells), np.arange(n_cells, dtype=np.int32),
                              np.r_[0, np.cumsum(per_node)]), shape=(n_nodes, n_cells))
    to_cells = RowSplit(cells, pool, threads)
    to_labels = RowSplit(labels, pool, threads)
    to_nodes = RowSplit(node_sum, pool, threads)
    sides = np.zeros((n, 2))
    ranks = np.arange(n) - rank_base
    rank = np.empty(n, dtype=np.int64)
    for _ in range(max(1, iters)):
        # both sides' centroids (sums of their members' cells), normalized per node
        sides[:, 0] = members == 0
        sides[:, 1] = members == 1
        lr = to_cells @ sides
        norms = np.sqrt(to_nodes @ (lr * lr))
        diff = lr[:, 0] / np.repeat(np.maximum(norms[:, 0], 1e-12), per_node)
        diff -= lr[:, 1] / np.repeat(np.maximum(norms[:, 1], 1e-12), per_node)
        del lr
        score = to_labels @ diff
        del diff
        # balanced split: within each node, the higher-scoring half goes left (ties: lower label)
        by_score = np.argsort(-score, kind="stable")
        rank[by_score[np.argsort(small[by_score], kind="stable")]] = ranks
        new_side = (rank >= half).astype(np.int64)
        changed = int((new_side != side).sum())
        side = members = new_side
        if changed <= tol * n:  # the tail of k-means moves a handful of labels per round
            break
    out = np.empty(n, dtype=np.int64)
    out[order] = side
    return out


def _cell_matrices(emb: sp.csr_matrix, order: np.ndarray, node_p: np.ndarray, node_start: np.ndarray,
                   group_nnz: int = 1 << 23) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
    """``cells`` (cells x positions), ``labels`` (positions x cells) and the cells per node.

    A cell is a (node, feature) pair with a nonzero; cells are ordered by node then feature, a
    cell's entries by position, and ``labels`` is ``cells``' transpose. Built a few million
    nonzeros of consecutive nodes at a time straight into the two matrices' arrays (each holds
    every nonzero once), so the only whole-level arrays are the two results.
    """
    n, d = emb.shape
    n_nodes = node_start.size - 1
    lab_ptr = np.r_[0, np.cumsum(np.diff(emb.indptr)[order])].astype(np.int64)
    nnz = int(lab_ptr[-1])
    c_data, c_idx = np.empty(nnz), np.empty(nnz, dtype=np.int32)
    l_data, l_idx = np.empty(nnz), np.empty(nnz, dtype=np.int32)
    c_ptr: list[np.ndarray] = []
    per_node = np.zeros(n_nodes, dtype=np.int64)
    at_node = lab_ptr[node_start]
    g0, n_cells = 0, 0
    while g0 < n_nodes:
        g1 = max(g0 + 1, int(np.searchsorted(at_node, at_node[g0] + group_nnz, side="right")) - 1)
        g1 = min(g1, n_nodes)
        r0, r1 = int(node_start[g0]), int(node_start[g1])
        e0, e1 = int(lab_ptr[r0]), int(lab_ptr[r1])
        # feature-major within the block (positions sorted per feature); a stable radix sort
        # by node then lists each cell's entries together, in (node, feature, position) order
        blk = emb[order[r0:r1]].tocsc()
        feat = np.repeat(np.arange(d, dtype=np.int32), np.diff(blk.indptr))
        span = g1 - g0
        node = (node_p[r0:r1] - g0).astype(np.int16 if span < 2 ** 15 else np.int32)[blk.indices]
        by = np.argsort(node, kind="stable")
        node, feat = node[by], feat[by]
        first = np.flatnonzero(np.r_[True, (node[1:] != node[:-1]) | (feat[1:] != feat[:-1])])
        per_node[g0:g1] = np.bincount(node[first], minlength=span)
        del node, feat
        c_data[e0:e1] = blk.data[by]
        c_idx[e0:e1] = blk.indices[by] + r0
        c_ptr.append(first + e0)
        del blk, by
        group = sp.csr_matrix((c_data[e0:e1], c_idx[e0:e1] - r0, np.r_[first, e1 - e0]),
                              shape=(first.size, r1 - r0)).tocsc()  # its transpose, sorted
        l_data[e0:e1] = group.data
        l_idx[e0:e1] = group.indices + n_cells
        n_cells += first.size
        g0 = g1
    cells = sp.csr_matrix((c_data, c_idx, np.concatenate(c_ptr + [np.array([nnz])])), shape=(n_cells, n),
                          copy=False)
    labels = sp.csr_matrix((l_data, l_idx, lab_ptr), shape=(n, n_cells), copy=False)
    return cells, labels, per_node


def build_tree(emb: sp.csr_matrix, branching: int, max_leaf_size: int, seed: int,
               iters: int = 20, threads: int = 1, own: bool = False) -> ClusterTree:
    """Cluster labels into a B-ary tree (``branching`` = B) with leaves of <= ~``max_leaf_size``
    (``own``: ``emb`` may be scaled in place, see :func:`balanced_kmeans_codes`)."""
    n = emb.shape[0]
    codes, depth = balanced_kmeans_codes(emb, max_leaf_size, seed, iters, threads=threads, own=own)
    label_order = np.argsort(codes, kind="stable").astype(np.int64)
    if depth == 0:
        return ClusterTree((np.array([0, n], dtype=np.int64),), label_order)
    n_leaves = 2 ** depth
    bottom = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=n_leaves))]).astype(np.int64)
    ptrs = [bottom]
    size = n_leaves
    while size > branching:
        parent_of = np.arange(size) // branching
        n_par = int(parent_of[-1]) + 1
        ptrs.append(np.concatenate([[0], np.cumsum(np.bincount(parent_of, minlength=n_par))]).astype(np.int64))
        size = n_par
    ptrs.append(np.array([0, size], dtype=np.int64))
    return ClusterTree(tuple(reversed(ptrs)), label_order)
