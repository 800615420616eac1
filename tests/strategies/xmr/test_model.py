"""XRModel on matrices: the tree, beam search against exhaustive path scoring, seeding and
save -> load -> predict identity."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from ltrr.errors import NotFittedError
from strategies.xmr.indexer import balanced_kmeans_codes, build_tree
from strategies.xmr.model import XRConfig, XRModel, _transform, pifa


def _synthetic(seed: int, n_labels: int = 300, d: int = 400, n: int = 1500):
    """Queries drawn around label prototypes, so the labels are learnable."""
    rng = np.random.default_rng(seed)
    proto = sp.random(n_labels, d, density=0.03, random_state=np.random.default_rng(seed + 1),
                      format="csr")
    lab = rng.integers(0, n_labels, size=n)
    noise = sp.random(n, d, density=0.01, random_state=np.random.default_rng(seed + 2), format="csr")
    x = (proto[lab] + 0.3 * noise).tocsr()
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    x = sp.diags(1 / np.maximum(norms, 1e-12)) @ x
    y = sp.csr_matrix((np.ones(n), (np.arange(n), lab)), shape=(n, n_labels))
    return sp.csr_matrix(x), y, lab


@pytest.fixture(scope="module")
def trained():
    x, y, lab = _synthetic(0)
    cfg = XRConfig(branching=4, max_leaf_size=20, seed=7)
    return x, y, lab, XRModel(cfg).fit(x, y)


def test_tree_is_balanced_with_small_leaves():
    x, y, _ = _synthetic(1)
    emb = pifa(x, y)
    codes, depth = balanced_kmeans_codes(emb, max_leaf_size=20, seed=0)
    assert depth == 4  # ceil(log2(300 / 20))
    sizes = np.bincount(codes, minlength=2 ** depth)
    assert sizes.max() - sizes.min() <= 1 and sizes.max() <= 20
    tree = build_tree(emb, branching=4, max_leaf_size=20, seed=0)
    assert tree.level_sizes() == [1, 4, 16, 300]
    assert np.array_equal(np.sort(tree.label_order), np.arange(300))


def test_tree_groups_similar_labels():
    # two well separated groups of labels never share a top-level cluster
    rng = np.random.default_rng(0)
    a = rng.random((40, 10)) * np.r_[np.ones(5), np.zeros(5)]
    b = rng.random((40, 10)) * np.r_[np.zeros(5), np.ones(5)]
    emb = sp.csr_matrix(np.vstack([a, b]))
    codes, depth = balanced_kmeans_codes(emb, max_leaf_size=20, seed=0)
    top = codes >> (depth - 1)
    assert len(set(top[:40])) == 1 and len(set(top[40:])) == 1 and top[0] != top[40]


def test_predicts_training_labels(trained):
    x, _, lab, model = trained
    ids, scores = model.predict(x, k=5)
    assert ids.shape == scores.shape == (x.shape[0], 5)
    assert (ids[:, 0] == lab).mean() >= 0.95  # measured 1.0 on this seed
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_beam_search_equals_exhaustive_scoring_when_the_beam_covers_the_tree(trained):
    x, _, _, model = trained
    q = sp.csr_matrix(x[:50], dtype=np.float32)
    ids, scores = model.predict(q, k=10, beam=10_000)
    # exhaustive: every label's score is the product of transformed margins along its path
    path = np.ones((q.shape[0], 1))
    for t in range(model.tree.n_levels):
        margins = (q @ model.weights[t]).toarray() + model.biases[t][None, :]
        path = path[:, model.tree.parents(t)] * _transform(margins, "l3-hinge")
    full = np.empty_like(path)
    full[:, model.tree.label_order] = path
    order = np.lexsort((np.broadcast_to(np.arange(full.shape[1]), full.shape), -full), axis=1)[:, :10]
    np.testing.assert_array_equal(ids, order)
    np.testing.assert_allclose(scores, np.take_along_axis(full, order, axis=1), rtol=1e-5)


def test_seeded_fit_is_deterministic_and_the_seed_matters():
    x, y, _ = _synthetic(2, n_labels=200, n=800)
    a = XRModel(XRConfig(branching=4, max_leaf_size=20, seed=3)).fit(x, y)
    b = XRModel(XRConfig(branching=4, max_leaf_size=20, seed=3)).fit(x, y)
    c = XRModel(XRConfig(branching=4, max_leaf_size=20, seed=4)).fit(x, y)
    assert np.array_equal(a.tree.label_order, b.tree.label_order)
    for wa, wb in zip(a.weights, b.weights, strict=True):
        assert (wa != wb).nnz == 0
    ia, sa = a.predict(x, 10)
    ib, sb = b.predict(x, 10)
    assert np.array_equal(ia, ib) and np.array_equal(sa, sb)
    assert not np.array_equal(a.tree.label_order, c.tree.label_order)


def test_save_load_predicts_identically(trained, tmp_path):
    x, _, _, model = trained
    model.save(tmp_path)
    assert {"L0_keys.npy", "L2_value.npy", "b2.npy"} <= {p.name for p in tmp_path.iterdir()}
    loaded = XRModel.load(tmp_path)
    i1, s1 = model.predict(x, 10)
    i2, s2 = loaded.predict(x, 10)
    assert np.array_equal(i1, i2) and np.array_equal(s1, s2)


def test_small_label_sets_use_a_flat_model():
    x, y, lab = _synthetic(3, n_labels=30, n=300)
    model = XRModel(XRConfig(max_leaf_size=100)).fit(x, y)
    assert model.tree.level_sizes() == [1, 30]
    ids, _ = model.predict(x, 3)
    assert (ids[:, 0] == lab).mean() >= 0.95


def test_k_beyond_the_beam_pads():
    x, y, _ = _synthetic(4, n_labels=100, n=400)
    model = XRModel(XRConfig(branching=2, max_leaf_size=10, beam=1)).fit(x, y)
    ids, scores = model.predict(x[:3], k=50)
    # beam 1 reaches one leaf of <= 10 labels; the rest is padding
    assert ((ids >= 0).sum(axis=1) <= 10).all()
    assert np.isneginf(scores[ids < 0]).all()


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"beam": 0}, r"'beam' parameter must be an int in \[1, inf\). Got 0 instead"),
    ({"branching": 1}, r"'branching' \(B\) parameter must be an int in \[2, inf\). Got 1 instead"),
    ({"negatives": "hard"}, r"'negatives' parameter must be 'tfn' or 'tfn\+man'. Got 'hard'"),
])
def test_bad_config_names_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        XRConfig(**kwargs)


def test_matcher_aware_negatives_train_and_predict():
    x, y, lab = _synthetic(5)
    model = XRModel(XRConfig(branching=4, max_leaf_size=20, negatives="tfn+man")).fit(x, y)
    ids, _ = model.predict(x, 5)
    assert (ids[:, 0] == lab).mean() >= 0.95


def test_one_query_at_a_time_equals_the_batch(trained):
    x, _, _, model = trained
    q = sp.csr_matrix(x[:40], dtype=np.float32)
    ids, scores = model.predict(q, k=15)
    for i in range(q.shape[0]):
        one_ids, one_scores = model.predict(q[i:i + 1], k=15)
        np.testing.assert_array_equal(one_ids[0], ids[i])
        np.testing.assert_allclose(one_scores[0], scores[i], rtol=1e-6)


def test_batches_larger_than_a_block_equal_block_by_block(trained, monkeypatch):
    x, _, _, model = trained
    q = sp.csr_matrix(x[:100], dtype=np.float32)
    ids, scores = model.predict(q, k=10)
    monkeypatch.setattr(XRModel, "BATCH", 7)
    ids7, scores7 = model.predict(q, k=10)
    assert np.array_equal(ids, ids7) and np.array_equal(scores, scores7)


@pytest.mark.parametrize("use", ["predict", "weights", "save"])
def test_an_unfitted_model_says_so(use, tmp_path):
    model = XRModel()
    calls = {"predict": lambda: model.predict(sp.csr_matrix((2, 3)), k=5),
             "weights": lambda: model.weights, "save": lambda: model.save(tmp_path)}
    with pytest.raises(NotFittedError, match=r"XRModel is not fitted \(no label tree\): call fit or load first"):
        calls[use]()
    assert not any(tmp_path.iterdir())


def test_owned_embeddings_are_scaled_in_place_to_the_same_codes():
    emb = sp.random(400, 50, density=0.1, format="csr", dtype=np.float32, random_state=np.random.default_rng(8))
    copy = emb.copy()
    codes, depth = balanced_kmeans_codes(emb, max_leaf_size=20, seed=1)
    assert (emb != copy).nnz == 0  # not handed over: untouched
    owned, depth2 = balanced_kmeans_codes(copy, max_leaf_size=20, seed=1, own=True)
    assert depth2 == depth and np.array_equal(owned, codes)
    nonempty = np.diff(copy.indptr) > 0
    np.testing.assert_allclose(sp.linalg.norm(copy, axis=1)[nonempty], 1.0, rtol=1e-6)  # scaled in place


def test_bias_column_is_the_hstack():
    from strategies.xmr.model import _with_bias

    x = sp.random(50, 30, density=0.2, format="csr", dtype=np.float32, random_state=np.random.default_rng(3))
    x = (sp.diags((np.arange(50) != 5).astype(np.float32)) @ x).tocsr()  # row 5 empty
    x.eliminate_zeros()
    x.sum_duplicates()  # sorted
    x.data[::7] = 0.0  # explicit zeros stay
    assert x.has_canonical_format and np.diff(x.indptr)[5] == 0
    # unsorted and duplicate indices: canonical, as hstack makes them
    messy = sp.csr_matrix((np.array([1, 2, 3, 4], np.float32), np.array([2, 2, 0, 1]), np.array([0, 3, 4])),
                          shape=(2, 30))
    for m in (x, messy):
        ref = sp.hstack([m, np.full((m.shape[0], 1), 2.5, dtype=np.float32)], format="csr")
        got = _with_bias(m, 2.5)
        assert got.shape == (m.shape[0], 31) and got.dtype == np.float32
        for name in ("data", "indices", "indptr"):
            np.testing.assert_array_equal(getattr(got, name), getattr(ref, name), err_msg=name)
    assert messy.indices.tolist() == [2, 2, 0, 1]  # the caller's matrix untouched


def test_a_consumed_x_trains_the_same_model_and_is_released():
    x, y, _ = _synthetic(2)
    cfg = XRConfig(branching=4, max_leaf_size=20, seed=3)
    kept = XRModel(cfg).fit(x.copy(), y)
    given = x.copy()
    consumed = XRModel(cfg).fit(given, y, consume_x=True)
    assert given.shape == x.shape and given.nnz == 0  # handed over: left empty
    ids_a, s_a = kept.predict(x, 10)
    ids_b, s_b = consumed.predict(x, 10)
    np.testing.assert_array_equal(ids_a, ids_b)
    np.testing.assert_array_equal(s_a, s_b)
    for a, b in zip(kept.chunks, consumed.chunks, strict=True):
        np.testing.assert_array_equal(a.value, b.value)
    # matcher-aware negatives search with x's features: not released
    man = XRConfig(branching=4, max_leaf_size=20, seed=3, negatives="tfn+man")
    given = x.copy()
    XRModel(man).fit(given, y, consume_x=True)
    assert given.nnz == x.nnz
