"""Trie and trie / k-means hybrid label trees for XR-Linear over *string* labels.

From the session-aware query auto-completion paper (Yadav, Sen, Hill, Mazumdar and Dhillon,
"Session-Aware Query Auto-completion using Extreme Multi-label Ranking", KDD 2021): when labels
are queries and the input is a typed prefix, a tree whose clusters share prefixes makes each
level's matcher learn "which next characters" — a question the prefix answers well — instead of
the topical clusters k-means finds on label embeddings.

- :func:`trie_tree` — a trie over the label strings: level ``t`` splits by the ``t``-th
  character, a node stops splitting once it holds at most ``max_leaf_size`` labels.
- :func:`hybrid_tree` — a trie over the first ``trie_depth`` characters, and below each trie
  node balanced spherical k-means on :func:`position_weighted_embeddings` (character n-grams,
  those at the start of words weighted up, earlier words more than later ones).

Every tree is described by one integer *path* per label (a code per level) and turned into a
:class:`~strategies.xmr.indexer.ClusterTree` by :func:`tree_from_paths`; the matchers and the
beam search of :class:`~strategies.xmr.model.XRModel` work on any such tree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from strategies.xmr.indexer import ClusterTree, _row_normalize, balanced_kmeans_codes


def tree_from_paths(paths: np.ndarray) -> ClusterTree:
    """The tree whose level-``t`` nodes are the distinct length-``t`` prefixes of ``paths``.

    ``paths`` is ``int64[n_labels, depth]``; labels sharing a path prefix share the node. Columns
    where every label has the same code add nothing (a single child everywhere) and are dropped.
    """
    paths = np.asarray(paths, dtype=np.int64)
    n = paths.shape[0]
    if n == 0:
        raise ValueError("Cannot build a label tree over 0 labels.")
    if paths.ndim != 2:
        raise ValueError(f"paths must be 2-D (labels x levels); got shape {paths.shape}.")
    keep = [j for j in range(paths.shape[1]) if np.unique(paths[:, j]).size > 1]
    paths = paths[:, keep]
    order = np.lexsort(paths.T[::-1]) if paths.shape[1] else np.arange(n)
    sp_ = paths[order]
    node_prev = np.zeros(n, dtype=np.int64)  # node of each (sorted) label at the previous level
    ptrs = []
    for t in range(sp_.shape[1]):
        change = np.ones(n, dtype=bool)
        change[1:] = np.any(sp_[1:, : t + 1] != sp_[:-1, : t + 1], axis=1)
        node = np.cumsum(change) - 1
        first = np.flatnonzero(change)
        parent_of_node = node_prev[first]
        n_parent = int(node_prev[-1]) + 1
        ptrs.append(np.concatenate([[0], np.cumsum(np.bincount(parent_of_node, minlength=n_parent))]))
        node_prev = node
    n_leaf = int(node_prev[-1]) + 1
    ptrs.append(np.concatenate([[0], np.cumsum(np.bincount(node_prev, minlength=n_leaf))]))
    if len(ptrs) == 1:  # one cluster: root -> leaf -> labels
        ptrs.insert(0, np.array([0, 1]))
    return ClusterTree(tuple(p.astype(np.int64) for p in ptrs), order.astype(np.int64))


def _char_codes(labels: Sequence[str], depth: int) -> np.ndarray:
    """``int64[n, depth]``: code point + 1 of each of the first ``depth`` characters, 0 past the end."""
    out = np.zeros((len(labels), depth), dtype=np.int64)
    for i, s in enumerate(labels):
        cs = [ord(c) + 1 for c in s[:depth]]
        out[i, : len(cs)] = cs
    return out


def trie_tree(labels: Sequence[str], max_leaf_size: int = 100, max_depth: int = 24) -> ClusterTree:
    """A trie over ``labels``, cut where a node holds at most ``max_leaf_size`` labels.

    A node is split by its next character only while it holds more than ``max_leaf_size``
    labels (and for at most ``max_depth`` characters); a character all of a node's labels share
    adds no level (path compression, as in a radix trie). Labels of a node still too large after
    ``max_depth`` characters are chunked in sorted order.
    """
    if max_leaf_size < 1:
        raise ValueError(f"The 'max_leaf_size' parameter must be an int in [1, inf). Got {max_leaf_size!r} instead.")
    n = len(labels)
    codes = _char_codes(labels, max_depth)
    group = np.zeros(n, dtype=np.int64)
    paths = np.zeros((n, max_depth + 1), dtype=np.int64)
    base = int(codes.max()) + 2 if codes.size else 2
    level = np.zeros(n, dtype=np.int64)  # levels used so far by each label's path
    for j in range(max_depth):
        size = np.bincount(group)[group]
        split = size > max_leaf_size
        if not split.any():
            break
        key = group * base + codes[:, j]
        # path compression (a radix trie): a character every label of the node shares adds no level
        pairs = np.unique(key[split])
        n_children = np.bincount(pairs // base, minlength=int(group.max()) + 1)
        branch = split & (n_children[group] > 1)
        paths[branch, level[branch]] = codes[branch, j]
        level[branch] += 1
        _, group = np.unique(np.where(branch, key, group * base), return_inverse=True)
        group = group.ravel()
    size = np.bincount(group)[group]
    if (size > max_leaf_size).any():  # still too big: chunk each group in label order
        order = np.lexsort((np.array(labels, dtype=object).astype(str), group))
        rank = np.empty(n, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(np.bincount(group))[:-1]])
        rank[order] = np.arange(n) - starts[group[order]]
        paths[:, max_depth] = np.where(size > max_leaf_size, rank // max_leaf_size, 0)
    return tree_from_paths(paths)


def position_weighted_embeddings(labels: Sequence[str], n_max: int = 3, start_weight: float = 2.0,
                                 word_decay: float = 0.5) -> sp.csr_matrix:
    """Character 1..``n_max``-gram TF-IDF of ``labels``, weighted by where each n-gram starts.

    An n-gram starting a word counts ``start_weight`` times; the ``w``-th word (0-based) counts
    ``1 / (1 + w) ** word_decay``. Prefix completion is decided by word beginnings and by the
    first words, so labels that *start* alike end up close, unlike plain TF-IDF. Rows are
    L2-normalized.
    """
    vocab: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for i, text in enumerate(labels):
        acc: dict[int, float] = {}
        for w, word in enumerate(text.split()):
            ww = 1.0 / (1.0 + w) ** word_decay
            for n in range(1, n_max + 1):
                for s in range(len(word) - n + 1):
                    g = word[s: s + n] if s else "^" + word[:n]
                    j = vocab.setdefault(g, len(vocab))
                    acc[j] = acc.get(j, 0.0) + ww * (start_weight if s == 0 else 1.0)
        rows.extend([i] * len(acc))
        cols.extend(acc.keys())
        vals.extend(acc.values())
    m = sp.csr_matrix((np.asarray(vals, dtype=np.float64), (np.asarray(rows, dtype=np.int64),
                                                             np.asarray(cols, dtype=np.int64))),
                      shape=(len(labels), max(len(vocab), 1)))
    df = np.bincount(m.indices, minlength=m.shape[1])
    idf = np.log((1.0 + m.shape[0]) / (1.0 + df)) + 1.0
    m = m @ sp.diags(idf)
    return _row_normalize(sp.csr_matrix(m))


def hybrid_tree(labels: Sequence[str], trie_depth: int = 1, branching: int = 16,
                max_leaf_size: int = 100, seed: int = 0, kmeans_iters: int = 20) -> ClusterTree:
    """Trie over the first ``trie_depth`` characters, balanced k-means below each trie node.

    Below a trie node, labels are split by recursive balanced spherical 2-means on
    :func:`position_weighted_embeddings` into leaves of at most about ``max_leaf_size``, whose
    binary levels are grouped ``branching`` at a time (as the k-means indexer does).
    """
    if trie_depth < 0:
        raise ValueError(f"The 'trie_depth' parameter must be an int in [0, inf). Got {trie_depth!r} instead.")
    if branching < 2:
        raise ValueError(f"The 'branching' (B) parameter must be an int in [2, inf). Got {branching!r} instead.")
    n = len(labels)
    prefix = _char_codes(labels, trie_depth)
    if trie_depth:
        _, group = np.unique(prefix, axis=0, return_inverse=True)
        group = np.asarray(group).ravel()
    else:
        group = np.zeros(n, dtype=np.int64)
    emb = position_weighted_embeddings(labels)
    leaf = np.zeros(n, dtype=np.int64)
    depth = np.zeros(n, dtype=np.int64)
    seeds = np.random.SeedSequence(seed).generate_state(int(group.max()) + 1)
    for g in np.unique(group):
        members = np.flatnonzero(group == g)
        codes, d = balanced_kmeans_codes(emb[members], max_leaf_size, int(seeds[g]), kmeans_iters)
        leaf[members], depth[members] = codes, d
    bits_per_digit = math.log2(branching)
    digits = np.ceil(depth / bits_per_digit - 1e-9).astype(np.int64)
    n_dig = int(digits.max()) if n else 0
    kpaths = np.zeros((n, n_dig), dtype=np.int64)
    rest = leaf.copy()
    for j in range(n_dig - 1, -1, -1):  # base-B digits, least significant last; leading zeros pad
        kpaths[:, j] = rest % branching
        rest //= branching
    return tree_from_paths(np.hstack([prefix, kpaths]))
