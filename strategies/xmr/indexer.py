"""Hierarchical spherical k-means indexer: the label tree of the XMR model.

Labels (items) are embedded (PIFA: the normalized sum of the features of the queries that clicked
them) and split recursively by *balanced* spherical 2-means, as PECOS does (each node's half
closer to the left centroid than to the right one goes left): a binary tree of depth
``ceil(log2(n_labels / max_leaf_size))`` whose leaves hold at most about ``max_leaf_size`` labels.
Its levels are then grouped ``branching`` at a time into the B-ary tree the matchers learn, so
consecutive leaf clusters (siblings in the binary tree, hence similar) share a parent.

Every node of one depth is split in the same rounds: the (node, feature) cells of the embeddings'
nonzeros are indexed once per depth (an ``int32`` cell and a ``float32`` copy of the value per
nonzero, laid out in node order), after which a round is a compiled pass over each node's
entries (:mod:`strategies.xmr.kmeans_kernel`); centroids stay
sparse, one node's at a time, so memory follows the embeddings' nonzeros, never nodes x features.
Groups of consecutive nodes (independent subtrees) run on the training threads.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import scipy.sparse as sp

from strategies.xmr.kmeans_kernel import build_cells, split_round

_R = TypeVar("_R")


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
    change sides in a round. ``threads`` split each level's nodes (the result does not depend
    on it). ``own``: the caller hands ``emb`` over, so it is normalized in
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
    # per level, the nonzeros laid out by position (labels in node order): cell, value
    pos_cell = np.empty(emb.nnz, dtype=np.int32)
    pos_data = np.empty(emb.nnz, dtype=np.float32)
    scratch = [_Scratch(d) for _ in range(threads if pool is not None else 1)]
    try:
        for level in range(depth):
            side = _split_level(grp, emb, level, rng, iters, tol, pool, threads, pos_cell, pos_data, scratch)
            grp = grp * 2 + side
    finally:
        if pool is not None:
            pool.shutdown()
    return grp, depth


def _node_groups(node_nnz: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """Consecutive nodes cut into at most ``parts`` ranges of about equal nonzeros."""
    n_nodes = node_nnz.size
    cum = np.cumsum(node_nnz)
    total = float(cum[-1]) if n_nodes else 0.0
    target = total * np.arange(1, parts) / parts
    i = np.minimum(np.searchsorted(cum, target, side="left"), max(n_nodes - 1, 0))
    before = np.where(i > 0, cum[np.maximum(i - 1, 0)], 0)  # the nearer boundary: before or after node i
    cuts = np.where(target - before < cum[i] - target, i, i + 1) if n_nodes else i
    edges = sorted({0, *cuts.tolist(), n_nodes})
    return [(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


class _Scratch:
    """Per-thread work arrays of the compiled rounds, grown as levels need (kept across levels)."""

    def __init__(self, d: int):
        self.fmap = np.full(d, -1, dtype=np.int32)
        self.flist = np.empty(0, dtype=np.int32)
        self.lr0 = np.empty(0)
        self.lr1 = np.empty(0)
        self.neg = np.empty(0)

    def fit(self, n_feat: int, n_cells: int, n_pos: int) -> None:
        if self.flist.size < n_feat:
            self.flist = np.empty(n_feat, dtype=np.int32)
        if self.lr0.size < n_cells:
            self.lr0, self.lr1 = np.empty(n_cells), np.empty(n_cells)
        if self.neg.size < n_pos:
            self.neg = np.empty(n_pos)


def _split_level(grp: np.ndarray, emb: sp.csr_matrix, level: int, rng: np.random.Generator,
                 iters: int, tol: float, pool: ThreadPoolExecutor | None, threads: int,
                 pos_cell: np.ndarray, pos_data: np.ndarray, scratch: list[_Scratch]) -> np.ndarray:
    """Side (0 left, 1 right) of every label in the balanced 2-means split of its node.

    Labels are handled in node order (position ``p`` holds label ``order[p]``; a node's labels
    are contiguous, in label order). Each embedding entry's (node, feature) cell is indexed
    once per level, and the entries' cells and values laid out by position (``pos_cell``,
    ``pos_data``: the caller's arrays over the nonzeros, reused by every level); every round is then
    :func:`~strategies.xmr.kmeans_kernel.split_round` over groups of consecutive nodes
    (independent subtrees), one group per thread, with the early stop counted over the level.
    """
    n = grp.size
    n_nodes = 2 ** level
    sizes = np.bincount(grp, minlength=n_nodes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    order = np.argsort(grp, kind="stable")
    node_start = np.r_[starts, n].astype(np.int64)
    # two distinct random members of every node seed its two centroids
    a = rng.integers(0, sizes)
    b = (a + 1 + rng.integers(0, np.maximum(sizes - 1, 1))) % sizes
    members = np.full(n, -1, dtype=np.int8)  # the two seeds start as the sides' only members
    members[starts + a] = 0
    members[starts + b] = 1
    side = np.full(n, -1, dtype=np.int8)
    pos_ptr = np.r_[0, np.cumsum(np.diff(emb.indptr)[order])].astype(np.int64)
    node_nnz = pos_ptr[node_start[1:]] - pos_ptr[node_start[:-1]]
    groups = _node_groups(node_nnz, threads if pool is not None else 1)
    n_cells = np.zeros(n_nodes, dtype=np.int64)
    d = emb.shape[1]

    def cells(i: int) -> None:
        g0, g1 = groups[i]
        most = int(node_nnz[g0:g1].max())
        scratch[i].fit(min(d, most), 0, 0)
        build_cells(emb.indptr, emb.indices, emb.data, order, node_start, g0, g1, scratch[i].fmap,
                    scratch[i].flist, pos_ptr, pos_cell, pos_data, n_cells)
        scratch[i].fit(0, int(n_cells[g0:g1].max()), int(sizes[g0:g1].max()))

    src = members  # the first round sums the seeds, later ones the previous round's sides

    def one_round(i: int) -> int:
        g0, g1 = groups[i]
        sc = scratch[i]
        return int(split_round(pos_ptr, pos_data, pos_cell, node_start, n_cells, g0, g1,
                               src, side, sc.lr0, sc.lr1, sc.neg))

    def run(fn: Callable[[int], _R]) -> list[_R]:
        if pool is not None and len(groups) > 1:
            return list(pool.map(fn, range(len(groups))))
        return [fn(i) for i in range(len(groups))]

    run(cells)
    for _ in range(max(1, iters)):
        changed = sum(run(one_round))
        src = side
        if changed <= tol * n:  # the tail of k-means moves a handful of labels per round
            break
    out = np.empty(n, dtype=np.int64)
    out[order] = side
    return out


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
