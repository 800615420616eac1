"""Catalog encoding in shards: stored chunk by chunk (an interrupted encoding resumes), and
spread over Dask worker processes that fill the shared embedding cache."""

from __future__ import annotations

import numpy as np
import pytest

from strategies.dense import DenseRetriever
from strategies.encoder import Encoder


def _texts(n):
    return [f"a film about item number {i} and its story" for i in range(n)]


def test_an_interrupted_encoding_resumes_after_the_last_stored_chunk(tmp_path, monkeypatch):
    root = str(tmp_path / "cache")
    texts = _texts(50)
    real = Encoder.encode
    calls = {"n": 0}

    def dying(self, batch, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed while encoding the third chunk
        return real(self, batch, *args, **kwargs)

    monkeypatch.setattr(Encoder, "encode", dying)
    first = DenseRetriever({"encode_chunk": 10, "embedding_cache_dir": root, "progress": False})
    with pytest.raises(KeyboardInterrupt):
        first.encode_items(texts)
    monkeypatch.setattr(Encoder, "encode", real)
    again = DenseRetriever({"encode_chunk": 10, "embedding_cache_dir": root, "progress": False})
    vectors = again.encode_items(texts)
    assert again.last_encode == {"cached": 20, "encoded": 30}  # two chunks had been stored
    fresh = DenseRetriever({"embedding_cache": False, "progress": False}).encode_items(texts)
    np.testing.assert_allclose(vectors, fresh, atol=1e-6)


def test_a_local_cluster_encodes_the_catalog_into_the_cache(tmp_path):
    root = str(tmp_path / "cache")
    texts = _texts(40)
    dense = DenseRetriever({"encode_chunk": 8, "encode_workers": 2, "embedding_cache_dir": root,
                            "progress": False})
    vectors = dense.encode_items(texts)
    assert dense.last_encode == {"cached": 0, "encoded": 40}
    single = DenseRetriever({"embedding_cache": False, "progress": False}).encode_items(texts)
    np.testing.assert_allclose(vectors, single, atol=1e-5)
    # the workers stored everything: a second pass encodes nothing
    again = DenseRetriever({"embedding_cache_dir": root, "progress": False})
    again.encode_items(texts)
    assert again.last_encode == {"cached": 40, "encoded": 0}
