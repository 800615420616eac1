"""The on-disk embedding cache: exact round trips, concurrent writers, merging, eviction."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

from ltrr.errors import ConfigError
from strategies import embedding_cache as ec
from strategies.embedding_cache import EmbeddingCache, text_keys


def vectors(seed: int, n: int, dim: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def test_round_trip_is_exact_and_misses_are_reported(tmp_path):
    cache = EmbeddingCache(tmp_path / "ns", dim=8)
    texts = ["alpha", "beta", "", "Amélie", "alpha "]
    vecs = vectors(0, 5)
    cache.store(texts, vecs)
    got, found = cache.lookup(["beta", "gamma", "alpha", "", "Amélie", "alpha "])
    assert found.tolist() == [True, False, True, True, True, True]
    np.testing.assert_array_equal(got[[0, 2, 3, 4, 5]], vecs[[1, 0, 2, 3, 4]])
    assert np.all(got[1] == 0)
    assert (cache.n_hits, cache.n_misses, len(cache)) == (5, 1, 5)
    # no pickle: both files are plain .npy arrays
    for path in (tmp_path / "ns").iterdir():
        np.load(path, allow_pickle=False)


def test_keys_hash_the_exact_text():
    keys = text_keys(["Alien", "alien", "Alien ", "Alien"])
    assert keys.dtype == np.dtype("S16") and len(set(keys.tolist())) == 3


def _writer(args):
    directory, seed = args
    cache = EmbeddingCache(directory, dim=8)
    texts = [f"text {i}" for i in range(seed * 30, seed * 30 + 60)]  # overlaps the next writer
    base = np.arange(len(texts), dtype=np.float32)[:, None] + seed * 30
    cache.store(texts, np.repeat(base, 8, axis=1))
    return len(texts)


def test_concurrent_writer_processes_lose_nothing(tmp_path):
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4) as pool:
        assert pool.map(_writer, [(tmp_path / "ns", s) for s in range(4)]) == [60] * 4
    cache = EmbeddingCache(tmp_path / "ns", dim=8)
    texts = [f"text {i}" for i in range(150)]
    got, found = cache.lookup(texts)
    assert found.all()
    np.testing.assert_array_equal(got[:, 0], np.arange(150, dtype=np.float32))
    assert not list((tmp_path / "ns").glob("*.tmp"))


def test_many_shards_are_merged_keeping_the_latest_vector(tmp_path, monkeypatch):
    monkeypatch.setattr(ec, "MAX_SHARDS", 3)
    cache = EmbeddingCache(tmp_path / "ns", dim=8)
    for i in range(4):
        cache.store([f"t{i}", "shared"], np.full((2, 8), i, np.float32))
    assert len(cache._shards()) == 1
    got, found = cache.lookup(["t0", "t1", "t2", "t3", "shared"])
    assert found.all() and got[:, 0].tolist() == [0, 1, 2, 3, 3]


def test_eviction_deletes_the_oldest_shards_first(tmp_path):
    one_shard = 8 * 4 * 100 + 16 * 100 + 2 * 128  # vectors, keys and two npy headers
    cache = EmbeddingCache(tmp_path / "ns", dim=8, max_bytes=int(2.5 * one_shard))
    for i in range(4):
        cache.store([f"batch{i} {j}" for j in range(100)], vectors(i, 100))
    _, found = cache.lookup([f"batch{i} 0" for i in range(4)])
    assert found.tolist() == [False, False, True, True]
    other = EmbeddingCache(tmp_path / "other", dim=8, max_bytes=int(2.5 * one_shard))
    other.store([f"x{j}" for j in range(100)], vectors(9, 100))  # the bound covers every namespace
    _, found = cache.lookup([f"batch{i} 0" for i in range(4)])
    assert found.tolist() == [False, False, False, True]


def test_damaged_or_foreign_shards_are_ignored(tmp_path):
    cache = EmbeddingCache(tmp_path / "ns", dim=8)
    cache.store(["a"], vectors(0, 1))
    vecs = next((tmp_path / "ns").glob("*.vecs.npy"))
    vecs.write_bytes(vecs.read_bytes()[:40])  # truncated
    assert not cache.lookup(["a"])[1].any()
    wide = EmbeddingCache(tmp_path / "ns", dim=16)
    cache.store(["b"], vectors(1, 1))
    assert not wide.lookup(["b"])[1].any() and cache.lookup(["b"])[1].all()


def test_bad_inputs_are_config_errors(tmp_path, monkeypatch):
    cache = EmbeddingCache(tmp_path / "ns", dim=8)
    with pytest.raises(ConfigError, match=r"needs vectors of shape \(2, 8\); got \(2, 4\)"):
        cache.store(["a", "b"], np.zeros((2, 4), np.float32))
    monkeypatch.setenv("LTRR_EMBEDDING_CACHE_MAX_MB", "lots")
    with pytest.raises(ConfigError, match=r"LTRR_EMBEDDING_CACHE_MAX_MB environment variable must "
                                          r"be a positive number of megabytes\. Got 'lots' instead"):
        EmbeddingCache(tmp_path / "ns", dim=8)


def test_location_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LTRR_CACHE_DIR", str(tmp_path / "c"))
    cache = EmbeddingCache.open("all-MiniLM-L6-v2", "ab" * 32, "onnx", 384)
    assert cache.directory.parent == tmp_path / "c" / "embeddings"
    assert cache.directory.name.startswith("all-MiniLM-L6-v2-onnx-384-")
    assert EmbeddingCache.open("all-MiniLM-L6-v2", "cd" * 32, "onnx", 384).directory != cache.directory
    for off in ("0", "false", "OFF"):
        monkeypatch.setenv("LTRR_EMBEDDING_CACHE", off)
        assert not ec.cache_enabled()
