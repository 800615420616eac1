"""BM25's building blocks: term-major assembly from document blocks, bounded per-term sums, the
top-k selection with repeated documents, thresholds and dense rows (all against brute force)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ltrr.catalog import Catalog
from ltrr.io import read_queries
from strategies.bm25 import BM25, _segment_sums
from strategies.bm25_postings import PostingsBuilder

DATA = Path(__file__).resolve().parents[2] / "data" / "cranfield"


def test_blocks_assemble_to_the_csc_of_the_whole_matrix() -> None:
    rng = np.random.default_rng(np.random.SeedSequence(11))
    dense = rng.integers(0, 3, size=(40, 9)) * (rng.random((40, 9)) < 0.3)
    blocks = ((0, 7, 4), (7, 8, 4), (8, 25, 7), (25, 40, 9))  # the vocabulary grows
    for a, e, width in blocks:
        dense[a:e, width:] = 0
    full = sp.csr_matrix(dense.astype(np.float32))
    builder = PostingsBuilder()
    for a, e, width in blocks:
        builder.add_matrix(full[a:e, :width])
    got = builder.build(9)
    want = full.tocsc()
    want.sort_indices()
    np.testing.assert_array_equal(got.ptr, want.indptr)
    np.testing.assert_array_equal(got.docs, want.indices)
    np.testing.assert_array_equal(got.tf, want.data)
    assert got.docs.dtype == np.int32 and got.tf.dtype == np.float32 and got.ptr.dtype == np.int64


def test_token_blocks_count_repeats_and_offset_rows() -> None:
    builder = PostingsBuilder(first_row=5)
    # doc 5: terms 0 0 2; doc 6: nothing; doc 7: term 1
    builder.add_tokens(np.array([0, 0, 2], dtype=np.int32), np.array([3, 0], dtype=np.int64), 3)
    builder.add_tokens(np.array([1], dtype=np.int32), np.array([1], dtype=np.int64), 3)
    got = builder.build(4)  # a fourth term no document holds
    np.testing.assert_array_equal(got.ptr, [0, 1, 2, 3, 3])
    np.testing.assert_array_equal(got.docs, [5, 7, 5])
    np.testing.assert_array_equal(got.tf, [2, 1, 1])


def test_fit_in_many_small_blocks_equals_one_block(monkeypatch) -> None:
    import strategies.bm25 as module

    catalog = Catalog.from_jsonl(DATA / "corpus.jsonl")
    whole = BM25().fit(catalog)
    monkeypatch.setattr(module, "_FIT_CHUNK", 37)
    monkeypatch.setattr(module, "_BLOCK_TOKENS", 500)
    pieces = BM25().fit(catalog)
    assert pieces.vocab_ == whole.vocab_
    for name in ("ptr_", "docs_", "tf_", "scores_", "doc_len_", "idf_", "cap_", "top_docs_"):
        np.testing.assert_array_equal(getattr(pieces, name), getattr(whole, name), err_msg=name)


def test_segment_sums_read_in_slices_equal_reduceat() -> None:
    rng = np.random.default_rng(np.random.SeedSequence(5))
    df = rng.integers(0, 9, size=200)
    df[[0, 50, 199]] = [0, 40, 3]  # empty, longer than a slice, last
    ptr = np.r_[0, np.cumsum(df)]
    values = rng.random(int(ptr[-1])).astype(np.float32)
    nonempty = np.flatnonzero(df > 0)
    want = np.add.reduceat(values.astype(np.float64), ptr[nonempty])
    for step in (1, 7, 1 << 22):
        np.testing.assert_allclose(_segment_sums(values, ptr, nonempty, step=step), want, rtol=1e-12)


def test_dense_rows_score_like_binary_search(monkeypatch) -> None:
    """Pair scores (ranking features) with every term's lookups by dense row equal them with
    none (binary search in the posting lists)."""
    import strategies.bm25 as module

    catalog = Catalog.from_jsonl(DATA / "corpus.jsonl")
    texts = [q for _, q in read_queries(DATA / "queries.jsonl")][:80]
    model = BM25().fit(catalog)
    rows = np.tile(np.arange(0, len(catalog), 7), (len(texts), 1))
    monkeypatch.setattr(module, "_DENSE_LOOKUP", 0)  # never dense
    searched = model.score_items(texts, rows)
    assert not model._dense
    monkeypatch.setattr(module, "_DENSE_LOOKUP", 10**9)  # every term looked up is dense
    monkeypatch.setattr(module, "_DENSE_ROWS", 10**9)
    dense = model.score_items(texts, rows)
    assert len(model._dense) > 20
    assert (searched > 0).any()
    np.testing.assert_array_equal(dense, searched)


def test_whole_counts_are_stored_as_uint16_when_they_fit() -> None:
    small, big = PostingsBuilder(), PostingsBuilder()
    small.add_tokens(np.array([0, 0, 1], dtype=np.int32), np.array([3], dtype=np.int64), 2)
    big.add_tokens(np.zeros(70_000, dtype=np.int32), np.array([70_000], dtype=np.int64), 1)
    got = small.build(2, small_counts=True)
    assert got.tf.dtype == np.uint16
    np.testing.assert_array_equal(got.tf, [2, 1])
    wide = big.build(1, small_counts=True)  # 70,000 does not fit: float32, exact
    assert wide.tf.dtype == np.float32 and wide.tf.tolist() == [70_000.0]
    fitted = BM25().fit(Catalog.from_jsonl(DATA / "corpus.jsonl"))
    assert fitted.tf_.dtype == np.uint16
    weighted = BM25({"field_weights": {"title": 2.5}}).fit(Catalog.from_jsonl(DATA / "corpus.jsonl"))
    assert weighted.tf_.dtype == np.float32
