"""Trie and trie / k-means hybrid label trees over query strings."""

from __future__ import annotations

import os

import numpy as np
import pytest

from strategies.xmr.indexer import ClusterTree
from strategies.xmr.trie import (
    hybrid_tree,
    position_weighted_embeddings,
    tree_from_paths,
    trie_tree,
)


@pytest.fixture(scope="module")
def titles(small_movies) -> list[str]:
    return sorted({t.lower().strip() for t in small_movies.titles if t.strip()})


def _labels_below(tree: ClusterTree) -> list[list[np.ndarray]]:
    """For every level (root first), the label ids under each node."""
    levels = [[tree.label_order[a:b] for a, b in zip(tree.child_ptr[-1][:-1], tree.child_ptr[-1][1:], strict=True)]]
    for cp in reversed(tree.child_ptr[:-1]):
        below = levels[0]
        levels.insert(0, [np.concatenate(below[a:b]) for a, b in zip(cp[:-1], cp[1:], strict=True)])
    return levels


def test_tree_from_paths_groups_shared_prefixes():
    paths = np.array([[2, 1], [1, 0], [2, 0], [1, 0], [2, 1]])
    tree = tree_from_paths(paths)
    assert tree.level_sizes() == [1, 2, 3, 5]
    assert [cp.tolist() for cp in tree.child_ptr] == [[0, 2], [0, 1, 3], [0, 2, 3, 5]]
    assert tree.label_order.tolist() == [1, 3, 2, 0, 4]


def test_trie_clusters_share_prefixes_and_branch_on_the_next_character(titles):
    tree = trie_tree(titles, max_leaf_size=20)
    levels = _labels_below(tree)
    leaves = levels[-1]
    assert sorted(np.concatenate(leaves).tolist()) == list(range(len(titles)))
    assert max(len(leaf) for leaf in leaves) <= 20
    # level 1: one node per first character
    firsts = [{titles[i][0] for i in node} for node in levels[1]]
    assert all(len(f) == 1 for f in firsts)
    assert len({next(iter(f)) for f in firsts}) == len(firsts)
    # every node's labels share a prefix at least as long as its parent's; children differ
    # exactly at the first character after the parent's common prefix
    for t in range(1, len(levels) - 1):
        cp = tree.child_ptr[t]
        for p, node in enumerate(levels[t]):
            strings = [titles[i] for i in node]
            lcp = len(os.path.commonprefix(strings))
            kids = levels[t + 1][cp[p]:cp[p + 1]]
            if len(kids) < 2:
                continue
            nxt = [{titles[i][lcp: lcp + 1] for i in kid} for kid in kids]
            assert all(len(s) == 1 for s in nxt)
            assert len({next(iter(s)) for s in nxt}) == len(kids)


def test_trie_chunks_labels_it_cannot_split_within_max_depth():
    labels = [f"same prefix {i:03d}" for i in range(50)]
    tree = trie_tree(labels, max_leaf_size=10, max_depth=5)
    assert max(np.diff(tree.child_ptr[-1])) <= 10
    assert tree.label_order.size == 50


def test_hybrid_top_level_is_a_trie_and_leaves_are_bounded(titles):
    tree = hybrid_tree(titles, trie_depth=1, branching=4, max_leaf_size=20, seed=0)
    levels = _labels_below(tree)
    firsts = [{titles[i][0] for i in node} for node in levels[1]]
    assert all(len(f) == 1 for f in firsts)
    assert max(len(leaf) for leaf in levels[-1]) <= 20
    again = hybrid_tree(titles, trie_depth=1, branching=4, max_leaf_size=20, seed=0)
    assert np.array_equal(again.label_order, tree.label_order)  # seeded, deterministic


def test_position_weighting_separates_word_order():
    labels = ["star wars", "wars star", "star trek"]
    flat = position_weighted_embeddings(labels, start_weight=1.0, word_decay=0.0).toarray()
    assert (flat @ flat.T)[0, 1] == pytest.approx(1.0)  # an unweighted bag: word order is lost
    emb = position_weighted_embeddings(labels).toarray()
    cos = emb @ emb.T
    assert cos[0, 1] < 0.97  # measured 0.958
    # the first word's n-grams weigh more: sharing it beats sharing the second word
    assert cos[0, 2] > (lambda e: (e @ e.T)[0, 1])(position_weighted_embeddings(["star wars", "moon wars"]).toarray())


def test_bad_parameters_name_the_value():
    with pytest.raises(ValueError, match=r"'max_leaf_size' parameter must be an int in \[1, inf\). Got 0"):
        trie_tree(["a"], max_leaf_size=0)
    with pytest.raises(ValueError, match=r"'trie_depth' parameter must be an int in \[0, inf\). Got -1"):
        hybrid_tree(["a"], trie_depth=-1)
    with pytest.raises(ValueError, match=r"'branching' \(B\) parameter must be an int in \[2, inf\). Got 1"):
        hybrid_tree(["a", "b"], branching=1)
