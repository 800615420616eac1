"""Compiled rounds of the k-means tree's balanced 2-means splits (see :mod:`strategies.xmr.indexer`).

A level of the binary tree splits every node at once. Labels are handled in node order
(position ``p`` holds label ``order[p]``; a node's positions are contiguous), and every nonzero
of the label embeddings gets a *cell*: its (node, feature) pair, numbered per node in feature
order (:func:`build_cells`, which also lays the nonzeros' values and cells out by position, so
the rounds read them sequentially). A round (:func:`split_round`) then walks one node at a time:

1. both sides' centroids, as sums over the node's cells: each position's entries are added to
   its side's cell, positions in order, so every cell adds its entries in position order from
   0.0 in float64 (the sums the sparse cells x labels product formed before, term for term);
2. the centroids' norms (sums of squares in cell order) and the difference of the two unit
   centroids over cells;
3. each label's score, its entries (features in order) times the difference, summed from 0.0;
4. the balanced split: the higher-scoring half of the node goes left (ties: lower position).

So the codes are bit for bit those of the scipy products they replace, and the work arrays are
one node's (cells, positions), not the level's. Compiled with ``cache=True`` (once per machine)
and ``nogil=True``: the indexer runs groups of nodes (independent subtrees) on its threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["build_cells", "split_round"]


@njit(cache=True, nogil=True)
def build_cells(indptr, indices, data, order, node_start, g0, g1, fmap, flist, pos_ptr, pos_cell,
                pos_data, n_cells):  # pragma: no cover (compiled)
    """Cell of every embedding entry of the labels of nodes ``g0:g1``, laid out by position.

    ``indptr``/``indices``/``data``: the embeddings (CSR, features sorted per row); ``order``:
    label at each position; ``node_start``: each node's first position (one more entry than
    nodes); ``pos_ptr``: each position's first entry in the position-ordered arrays. Writes
    ``pos_cell`` (each entry's cell: the rank of its feature among the distinct features of its
    node's labels) and ``pos_data`` (its value), both in position order (each label's entries in
    feature order), and ``n_cells[g]``. ``fmap`` (``int32``, one per feature, all -1) and
    ``flist`` (``int32``, at least the most distinct features of a node) are scratch; ``fmap``
    is all -1 again on return.
    """
    for g in range(g0, g1):
        m = 0
        for p in range(node_start[g], node_start[g + 1]):
            lab = order[p]
            for k in range(indptr[lab], indptr[lab + 1]):
                f = indices[k]
                if fmap[f] < 0:
                    fmap[f] = 0
                    flist[m] = f
                    m += 1
        used = flist[:m]
        used.sort()
        for i in range(m):
            fmap[used[i]] = i
        for p in range(node_start[g], node_start[g + 1]):
            lab = order[p]
            at = pos_ptr[p] - indptr[lab]
            for k in range(indptr[lab], indptr[lab + 1]):
                pos_cell[at + k] = fmap[indices[k]]
                pos_data[at + k] = data[k]
        for i in range(m):
            fmap[used[i]] = -1
        n_cells[g] = m


@njit(cache=True, nogil=True)
def split_round(pos_ptr, pos_data, pos_cell, node_start, n_cells, g0, g1, members, side,
                lr0, lr1, neg):  # pragma: no cover (compiled)
    """One round of balanced spherical 2-means on nodes ``g0:g1``; returns how many labels
    changed sides.

    ``pos_ptr``/``pos_data``/``pos_cell``: the nonzeros by position (see :func:`build_cells`).
    ``members[p]``: the side (0, 1; -1 none) of position ``p`` the centroids are summed from;
    ``side[p]`` (``int8``) is overwritten with the new side (0: the higher-scoring half of its
    node, rounded up). ``members`` may be ``side`` itself (a node's members are read before its
    sides are written). ``lr0``/``lr1`` (``float64``, at least the most cells of a node) and
    ``neg`` (``float64``, at least the largest node) are scratch.
    """
    changed = 0
    for g in range(g0, g1):
        s, e = node_start[g], node_start[g + 1]
        m = n_cells[g]
        for c in range(m):
            lr0[c] = 0.0
            lr1[c] = 0.0
        for p in range(s, e):
            mem = members[p]
            if mem == 0:
                for k in range(pos_ptr[p], pos_ptr[p + 1]):
                    lr0[pos_cell[k]] += np.float64(pos_data[k])
            elif mem == 1:
                for k in range(pos_ptr[p], pos_ptr[p + 1]):
                    lr1[pos_cell[k]] += np.float64(pos_data[k])
        n0 = 0.0
        n1 = 0.0
        for c in range(m):
            n0 += lr0[c] * lr0[c]
            n1 += lr1[c] * lr1[c]
        n0 = max(np.sqrt(n0), 1e-12)
        n1 = max(np.sqrt(n1), 1e-12)
        for c in range(m):
            lr0[c] = lr0[c] / n0 - lr1[c] / n1
        for p in range(s, e):
            acc = 0.0
            for k in range(pos_ptr[p], pos_ptr[p + 1]):
                acc += np.float64(pos_data[k]) * lr0[pos_cell[k]]
            neg[p - s] = -acc
        by_score = np.argsort(neg[:e - s], kind="mergesort")
        half = (e - s + 1) // 2
        for r in range(e - s):
            p = s + by_score[r]
            new = 1 if r >= half else 0
            if side[p] != new:
                changed += 1
                side[p] = new
    return changed
