"""The k-means label tree: codes pinned to those of the scipy implementation it replaced, and
independent of the number of threads."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import scipy.sparse as sp

from strategies.xmr.indexer import _node_groups, balanced_kmeans_codes

# sha256 of the int64 codes computed by the scipy-product rounds of main at 6ff1a22 (before the
# compiled rounds): the compiled rounds form the same sums in the same order
REFERENCE = {
    "random": "9fb7cb41585cc573168862c21ead22048d6c93bf9615fcb75fdc44a992203093",
    "ties": "dadbd6a401875ed2748cf229082594177429767d52513ba2debb7bd1b0ec60fc",
}


def _emb(kind: str) -> sp.csr_matrix:
    emb = sp.random(5000, 800, density=0.02, format="csr", dtype=np.float32,
                    random_state=np.random.default_rng(3))
    if kind == "ties":  # a few distinct values: many tied scores, broken by position
        emb.data = (np.random.default_rng(4).integers(1, 4, emb.nnz) / 4).astype(np.float32)
    return emb


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("kind", ["random", "ties"])
def test_codes_are_bitwise_those_of_the_sparse_product_rounds(kind, threads):
    codes, depth = balanced_kmeans_codes(_emb(kind), max_leaf_size=10, seed=2, threads=threads)
    assert depth == 9
    assert hashlib.sha256(codes.astype(np.int64).tobytes()).hexdigest() == REFERENCE[kind]
    sizes = np.bincount(codes, minlength=2 ** depth)
    assert sizes.min() == 9 and sizes.max() == 10  # balanced leaves


def test_node_groups_cut_consecutive_nodes_by_nonzeros():
    assert _node_groups(np.array([5, 5]), 2) == [(0, 1), (1, 2)]
    assert _node_groups(np.array([9]), 2) == [(0, 1)]
    assert _node_groups(np.array([1, 1, 1, 1, 8]), 2) == [(0, 4), (4, 5)]
    assert _node_groups(np.array([3, 3, 3, 3]), 1) == [(0, 4)]
    assert _node_groups(np.array([0, 0, 4, 4]), 2) == [(0, 3), (3, 4)]
