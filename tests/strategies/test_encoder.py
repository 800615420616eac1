"""Encoder backends (torch, ONNX Runtime exported locally, int8) and the query-embedding cache."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from ltrr.catalog import Catalog
from ltrr.errors import ConfigError
from ltrr.threads import native_threads
from strategies import onnx_encoder
from strategies.dense import DenseRetriever
from strategies.embedding_cache import cache_root
from strategies.encoder import (
    DEFAULT_MODEL,
    Encoder,
    QueryEmbeddingCache,
    get_encoder,
    model_fingerprint,
)

CATALOG = "data/movies/catalog.jsonl"
QUERIES = ["space adventure with robots", "romantic comedy in paris", "Coppola", "",
           "animated film for children", "gangster crime drama 1972", "Amélie"]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    cat = Catalog.from_jsonl(CATALOG, limit=40)
    return cat.compose(["title", "directors", "genres", "year"]) + QUERIES


@pytest.fixture(scope="module")
def torch_vectors(texts) -> np.ndarray:
    return get_encoder().encode(texts, progress=False)


def test_onnx_backend_equals_torch_batched_and_one_at_a_time(texts, torch_vectors):
    enc = get_encoder(backend="onnx")
    assert (enc.backend, enc.dim) == ("onnx", 384)
    batched = enc.encode(texts, batch_size=16, progress=False)
    np.testing.assert_allclose(batched, torch_vectors, atol=1e-4)
    single = np.concatenate([enc.encode([t], progress=False) for t in QUERIES])
    np.testing.assert_allclose(single, torch_vectors[-len(QUERIES):], atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    info = enc.model.info
    assert info["max_abs_diff_vs_torch"] <= onnx_encoder.EXPORT_ATOL
    assert info["fingerprint"] == model_fingerprint(enc.source) and info["max_seq_length"] == 256


def test_onnx_int8_is_close_to_torch_and_smaller(texts, torch_vectors):
    enc = get_encoder(backend="onnx-int8")
    vecs = enc.encode(texts, progress=False)
    cosine = np.sum(vecs * torch_vectors, axis=1)
    assert cosine.min() > 0.95, cosine.min()
    assert not np.allclose(vecs, torch_vectors, atol=1e-4)  # it is really quantized
    fp32 = enc.model.directory / onnx_encoder.ONNX_FILE
    assert enc.model.path.stat().st_size < fp32.stat().st_size / 3


def test_export_is_reused_without_loading_torch_model(texts):
    first = get_encoder(backend="onnx")

    def must_not_load():
        raise AssertionError("the export should come from the cache")

    again = onnx_encoder.ensure_export(must_not_load, first.model.directory, DEFAULT_MODEL,
                                       first.fingerprint, quantized=False)
    assert again == first.model.path
    assert first.model.directory.parent == cache_root() / "onnx"


def test_export_that_disagrees_with_torch_is_refused(tmp_path, monkeypatch):
    exported = get_encoder(backend="onnx").model
    copy = tmp_path / "export"
    copy.mkdir()
    for f in exported.directory.iterdir():
        os.link(f, copy / f.name)  # a linked copy: deleting it leaves the session's export
    monkeypatch.setattr(onnx_encoder, "EXPORT_ATOL", -1.0)  # no export can pass
    with pytest.raises(ConfigError, match=r"The ONNX export of 'all-MiniLM-L6-v2' differs from "
                                          r"the torch model by .* use backend = \"torch\""):
        onnx_encoder.verify_export(get_encoder().model, copy, exported.info)
    assert not (copy / onnx_encoder.ONNX_FILE).exists()
    assert (exported.directory / onnx_encoder.ONNX_FILE).exists()


def test_onnx_session_takes_the_current_thread_count():
    enc = get_encoder(backend="onnx")
    with native_threads(1):
        enc.encode(["one thread"], progress=False)
        assert enc.model.session().get_session_options().intra_op_num_threads == 1
    assert enc.model.session(2).get_session_options().intra_op_num_threads == 2


def test_unknown_backend_is_a_config_error():
    with pytest.raises(ConfigError, match=r"The 'backend' parameter must be one of torch, onnx, "
                                          r"onnx-int8\. Got 'tensorrt' instead\."):
        Encoder(DEFAULT_MODEL, backend="tensorrt")
    with pytest.raises(ConfigError, match=r"'backend' parameter .*Got 'cuda' instead"):
        DenseRetriever({"backend": "cuda"})


def test_onnx_backend_encodes_without_importing_torch():
    get_encoder(backend="onnx")  # the export exists in this session's cache directory
    code = ("import sys\nfrom strategies.encoder import get_encoder\n"
            "v = get_encoder(backend='onnx').encode(['hello'], progress=False)\n"
            "print(v.shape, 'torch' in sys.modules, 'sentence_transformers' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert out.stdout.strip() == "(1, 384) False False"


def test_query_cache_is_lru_with_counted_hits():
    cache = QueryEmbeddingCache(2)
    out = np.zeros((3, 2), np.float32)
    assert cache.get_many(["a", "b", "a"], out) == {"a": [0, 2], "b": [1]}
    cache.put_many(["a", "b"], np.array([[1, 0], [0, 1]], np.float32))
    assert cache.get_many(["a"], out) == {} and out[0].tolist() == [1, 0]  # a is now most recent
    cache.put_many(["c"], np.array([[1, 1]], np.float32))  # evicts b, the least recently used
    assert cache.get_many(["b", "c"], out) == {"b": [0]}
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.size, stats.max_size) == (2, 4, 2, 2)
    assert stats.hit_rate == pytest.approx(2 / 6)
    cache.clear()
    assert cache.stats().as_dict() == {"hits": 0, "misses": 0, "size": 0, "max_size": 2,
                                       "hit_rate": pytest.approx(float("nan"), nan_ok=True)}
    with pytest.raises(ConfigError, match=r"'query_cache_size' parameter must be an int in "
                                          r"\[0, inf\)\. Got -1 instead"):
        QueryEmbeddingCache(-1)


def test_retrievers_sharing_an_index_do_not_share_query_caches(monkeypatch):
    vectors = get_encoder().encode(QUERIES, progress=False)
    first = DenseRetriever({"progress": False}).fit_vectors(vectors)
    second = first.with_query_cache()
    assert second.index_ is first.index_ and second.query_cache is not first.query_cache
    enc = get_encoder(backend=first.params.backend)
    calls: list[int] = []
    forward = enc._forward
    monkeypatch.setattr(enc, "_forward", lambda t, b: calls.append(len(t)) or forward(t, b))
    query = "a query nobody asked before about lighthouses"
    a = first.retrieve([query], 3)
    first.retrieve([query], 3)
    b = second.retrieve([query], 3)  # its own cache is cold: one more forward pass
    assert calls == [1, 1]
    np.testing.assert_array_equal(a.ids, b.ids)
    assert first.query_cache.stats().hit_rate == 0.5 and second.query_cache.stats().hits == 0
    first.query_cache.clear()
    first.retrieve([query], 3)
    assert calls == [1, 1, 1]
