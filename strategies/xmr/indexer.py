"""Hierarchical spherical k-means indexer: the label tree of the XMR model.

Labels (items) are embedded (PIFA: the normalized sum of the features of the queries that clicked
them) and split recursively by *balanced* spherical 2-means, as PECOS does: a binary tree of depth
``ceil(log2(n_labels / max_leaf_size))`` whose leaves hold at most about ``max_leaf_size`` labels.
Its levels are then grouped ``branching`` at a time into the B-ary tree the matchers learn, so
consecutive leaf clusters (siblings in the binary tree, hence similar) share a parent.

Every node of one depth is split at once (vectorized across nodes), so the cost per k-means
iteration is one pass over the label embeddings' nonzeros.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


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


def _row_normalize(m: sp.csr_matrix) -> sp.csr_matrix:
    m = sp.csr_matrix(m, dtype=np.float64, copy=True)
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    m.data /= np.repeat(norms, np.diff(m.indptr))
    return m


def balanced_kmeans_codes(emb: sp.csr_matrix, max_leaf_size: int, seed: int,
                          iters: int = 20) -> tuple[np.ndarray, int]:
    """Leaf cluster of every label from recursive balanced spherical 2-means.

    Returns ``(codes, depth)``: ``codes[l]`` in ``[0, 2**depth)``; the two children of binary
    node ``g`` are ``2g`` and ``2g+1``, so leaf codes that share a prefix are close in the tree.
    """
    emb = _row_normalize(sp.csr_matrix(emb))
    n, d = emb.shape
    if n <= max_leaf_size:
        return np.zeros(n, dtype=np.int64), 0
    depth = max(1, math.ceil(math.log2(n / max_leaf_size)))
    while depth > 0 and 2 ** depth > n:
        depth -= 1
    rng = np.random.default_rng(seed)
    grp = np.zeros(n, dtype=np.int64)
    nz_row = np.repeat(np.arange(n), np.diff(emb.indptr))
    for level in range(depth):
        n_nodes = 2 ** level
        order = np.argsort(grp, kind="stable")
        sizes = np.bincount(grp, minlength=n_nodes)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        # two distinct random members of every node seed its two centroids
        a = rng.integers(0, sizes)
        b = (a + 1 + rng.integers(0, np.maximum(sizes - 1, 1))) % sizes
        seeds0, seeds1 = order[starts + a], order[starts + b]
        cent0, cent1 = emb[seeds0], emb[seeds1]
        side = np.full(n, -1, dtype=np.int64)
        rank_base = np.repeat(starts, sizes)
        half = (sizes + 1) // 2
        for _ in range(max(1, iters)):
            diff = (_row_normalize(cent0) - _row_normalize(cent1)).tocsr()
            if n_nodes * d <= 64_000_000:
                dense = diff.toarray().astype(np.float32)
                contrib = emb.data * dense[grp[nz_row], emb.indices]
            else:  # very wide: look the centroid entries up by key instead of densifying
                diff.sort_indices()
                keys = np.repeat(np.arange(n_nodes), np.diff(diff.indptr)) * d + diff.indices
                want = grp[nz_row] * d + emb.indices
                pos = np.minimum(np.searchsorted(keys, want), max(keys.size - 1, 0))
                hit = keys.size > 0
                contrib = np.where(hit & (keys[pos] == want), emb.data * diff.data[pos], 0.0)
            score = np.bincount(nz_row, weights=contrib, minlength=n)
            # balanced split: within each node, the higher-scoring half goes left
            sorted_idx = np.lexsort((np.arange(n), -score, grp))
            rank = np.empty(n, dtype=np.int64)
            rank[sorted_idx] = np.arange(n) - rank_base
            new_side = (rank >= half[grp]).astype(np.int64)
            if np.array_equal(new_side, side):
                break
            side = new_side
            ind0 = sp.csr_matrix((np.ones(n), (grp, np.arange(n))), shape=(n_nodes, n))
            left = sp.diags((side == 0).astype(np.float64))
            right = sp.diags((side == 1).astype(np.float64))
            cent0 = (ind0 @ left @ emb).tocsr()
            cent1 = (ind0 @ right @ emb).tocsr()
        grp = grp * 2 + side
    return grp, depth


def build_tree(emb: sp.csr_matrix, branching: int, max_leaf_size: int, seed: int,
               iters: int = 20) -> ClusterTree:
    """Cluster labels into a B-ary tree (``branching`` = B) with leaves of <= ~``max_leaf_size``."""
    n = emb.shape[0]
    codes, depth = balanced_kmeans_codes(emb, max_leaf_size, seed, iters)
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
