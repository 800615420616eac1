"""Okapi BM25 over term-major posting lists, with exact top-k over the documents that can win.

Scores follow ``rank_bm25.BM25Okapi`` (Robertson idf ``ln((N - n + 0.5) / (n + 0.5))`` with
negative idfs replaced by ``epsilon * mean(idf)``; a repeated query token counts each time), so
the numbers we report can be checked against the reference library.

Index: at fit time every (term, document) score
``idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))`` is computed once and stored
term-major (the CSC layout of a ``docs x vocab`` matrix): per term, its documents ascending
(``int32``), their term counts and their scores (``float32``). Saved as ``.npy`` files and
memory-mapped on load, so a loaded index costs only the pages queries touch. Fitting streams
the catalog through the analyzer a chunk at a time and assembles the term-major arrays from
per-block counting sorts (``strategies/bm25_postings.py``), so the peak holds two copies of the
postings, never an ``int64`` or ``float64`` copy of them all.

Query: one compiled function (``strategies/bm25_kernel.py``, numba) sums the query's posting
lists into a per-thread accumulator, keeps the k best totals of the documents they touch in a
heap (ties: lower row first) and resets only what it touched: O(postings), never a pass over the
corpus, except that a query reading postings for more than a quarter of the corpus scans the
accumulator instead of listing the documents it touched. The sums are in float64 and in
ascending term order, as ``np.add.at`` over the lists' concatenation adds them.

Top lists: a term whose posting list is longer than ``_LONG_DF`` also keeps its ``_TOP_LIST``
best-scoring documents and the best score outside them (its *cap*), in the saved index (format
2). Queries no longer read them: the numpy MaxScore-style pruning that did cost more than the
compiled scan of every list at 100k and 1M documents (mean 6 ms vs 2 ms per query at 1M,
depth 100) and was removed.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from itertools import chain, count
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from pydantic import Field, field_validator, model_validator

from ltrr.catalog import Catalog
from ltrr.contracts.strategy import (
    CandidateGenerator,
    ItemScorer,
    QueryStatistics,
    TermWeighted,
    TermWeights,
)
from ltrr.errors import ConfigError, DataError, NotFittedError, PersistenceError
from ltrr.params import Params
from ltrr.text import Analyzer
from ltrr.types import PAD_ID, QueryBatch, RetrievalResult
from strategies.bm25_postings import Postings, PostingsBuilder

__all__ = ["BM25", "BM25Params"]

# Posting lists longer than this get a top list and a cap (saved; see the module doc).
_LONG_DF = 4096
_TOP_LIST = 512
# Documents tokenized at a time while fitting (bounds the memory held as Python strings).
_FIT_CHUNK = 8192
# Tokens pooled into one term-major block while fitting (bounds the blocks' count and size).
_BLOCK_TOKENS = 1 << 22
# A term in at least 1/this of the documents is looked up in a dense row (at most _DENSE_ROWS).
_DENSE_LOOKUP = 4
_DENSE_ROWS = 64

_ARRAYS = ("postings_ptr", "postings_docs", "postings_tf", "postings_scores", "doc_len", "prior",
           "idf", "max_score", "cap", "long_row", "top_docs", "top_scores")


class BM25Params(Params):
    """Hyperparameters of :class:`BM25`.

    Parameters
    ----------
    k1
        Term-frequency saturation (>= 0); 0 makes BM25 a pure idf match.
    b
        Length normalisation in [0, 1]; 0 ignores document length.
    epsilon
        Floor for negative idfs (terms in more than half the documents), as a fraction of the
        mean idf, as in rank_bm25.
    text_fields
        Catalog fields whose text forms the indexed document (see ``Catalog.compose``).
    stem, stop_words, strip_accents
        Options of the shared :class:`ltrr.text.Analyzer`.
    quality_prior
        Weight of a popularity prior: ``score + quality_prior * prior`` for matching documents,
        where ``prior`` is ``log1p(popularity)`` min-max scaled to [0, 1]. 0 turns it off.
    field_weights
        Per-field weights (BM25F-style, one length normalisation): a term's frequency in a
        document is ``sum_f w_f * tf(t, f)`` and its length ``sum_f w_f * len(f)`` over the
        ``text_fields`` (weight 1 for a field not named), so a title match can count more than
        a match in the cast list. Empty (the default): plain BM25 over the fields joined.
    """

    k1: float = Field(1.5, ge=0.0, allow_inf_nan=False)
    b: float = Field(0.75, ge=0.0, le=1.0)
    epsilon: float = Field(0.25, ge=0.0, allow_inf_nan=False)
    text_fields: tuple[str, ...] = Field(("title", "text"), min_length=1)
    stem: bool = False
    stop_words: bool = False
    strip_accents: bool = False
    quality_prior: float = Field(0.0, ge=0.0, allow_inf_nan=False)
    field_weights: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _weights_of_indexed_fields(self) -> BM25Params:
        for name, w in self.field_weights.items():
            if name not in self.text_fields:
                raise ValueError(f"field_weights names {name!r}, which is not one of the text_fields "
                                 f"{list(self.text_fields)}")
            if not (w > 0 and np.isfinite(w)):
                raise ValueError(f"field_weights[{name!r}] must be a finite number > 0, got {w!r}")
        return self

    @property
    def weighted(self) -> bool:
        """True when some field's weight is not 1 (the field-weighted index)."""
        return any(w != 1.0 for w in self.field_weights.values())

    @field_validator("text_fields")
    @classmethod
    def _fields_named(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [f for f in value if not f.strip()]
        if bad:
            raise ValueError(f"must hold non-empty field names, found {bad!r}")
        if len(set(value)) != len(value):
            raise ValueError("must not name a field twice")
        return value


class BM25(CandidateGenerator[BM25Params], ItemScorer, TermWeighted, QueryStatistics):
    """Okapi BM25 candidate generator (registry name ``"bm25"``).

    Learned state (after ``fit``): ``vocab_`` (term -> id), ``idf_`` (``float64[n_terms]``),
    ``avgdl_``, ``doc_len_`` and the popularity ``prior_`` per document, and the posting lists
    (``ptr_`` ``int64[n_terms + 1]``; ``docs_`` ``int32``, ``scores_`` ``float32``, ``tf_``
    ``uint16`` when the counts are whole and fit, else ``float32``,
    each ``[n_postings]``, term ``t`` at ``ptr_[t]:ptr_[t + 1]``). Everything is saved, so a
    loaded index scores bit-identically without rebuilding.
    """

    type_name = "bm25"
    format_version = 2
    Params = BM25Params
    #: query-performance signals for the policy's context (:meth:`query_stats`)
    query_stat_names = ("bm25_top_frac", "bm25_top_gap")

    def __init__(self, params: BM25Params | dict[str, Any] | None = None, *, name: str | None = None):
        super().__init__(params, name=name)
        p = self.params
        self.analyzer = Analyzer(stem=p.stem, stop_words=p.stop_words, strip_accents=p.strip_accents)
        self._tokens_key = self._token_key()  # the request memo's key for this analyzer's tokens
        self.vocab_: dict[str, int] | None = None  # None until fit or load
        # an index of no term and no document until then
        self.ptr_ = np.zeros(1, dtype=np.int64)
        self.docs_ = np.empty(0, dtype=np.int32)
        self.tf_ = np.empty(0, dtype=np.float32)
        self.scores_ = np.empty(0, dtype=np.float32)
        self.prior_ = np.empty(0, dtype=np.float64)
        self.doc_len_ = np.empty(0, dtype=np.float32)
        self._local = threading.local()

    @property
    def n_docs(self) -> int:
        return int(self.doc_len_.size)

    # ------------------------------------------------------------------ building
    def _fit(self, catalog: Catalog) -> None:
        vocab: dict[str, int] = {}
        if self.params.weighted:
            rows = [range(a, min(a + _FIT_CHUNK, len(catalog))) for a in range(0, len(catalog), _FIT_CHUNK)]
            postings, doc_len = self._count_weighted(catalog, rows, vocab)
        else:
            postings, doc_len = self._count(catalog.compose_chunks(self.params.text_fields, _FIT_CHUNK), vocab)
        self.vocab_ = vocab
        self.doc_len_ = doc_len
        self.ptr_, self.docs_, self.tf_ = postings.ptr, postings.docs, postings.tf
        del postings
        self._set_prior(catalog)
        self._build_scores()

    def add_items(self, catalog: Catalog, new_rows: np.ndarray) -> None:
        """Index the items appended to ``catalog`` at rows ``new_rows``.

        The term counts of the old items are kept; idf, average length and every score are
        recomputed from them, so the result equals a fresh ``fit(catalog)``.
        """
        if self.vocab_ is None:
            self.fit(catalog)
            return
        n_old = self.n_docs
        rows = np.asarray(new_rows, dtype=np.int64).ravel()
        expected = np.arange(n_old, len(catalog), dtype=np.int64)
        if rows.shape != expected.shape or not np.array_equal(np.sort(rows), expected):
            raise DataError(
                f"{self.name}.add_items indexes items appended after the {n_old} it holds: "
                f"new_rows must be rows {n_old}..{len(catalog) - 1} of the catalog "
                f"({expected.size} rows); got {rows.size} rows {rows[:5].tolist()}..."
            )
        if rows.size:
            vocab = dict(self.vocab_)  # grown on a copy, so a failure leaves the index as it was
            if self.params.weighted:
                new, new_len = self._count_weighted(catalog, [range(n_old, len(catalog))], vocab)
            else:
                texts = catalog.compose(self.params.text_fields, range(n_old, len(catalog)))
                new, new_len = self._count([texts], vocab)
            n_terms = len(vocab)
            old_ptr = np.r_[self.ptr_, np.full(n_terms - (self.ptr_.size - 1), self.ptr_[-1])]
            new_ptr = np.r_[new.ptr, np.full(n_terms + 1 - new.ptr.size, new.ptr[-1])]
            old_df, new_df = np.diff(old_ptr), np.diff(new_ptr)
            ptr = np.r_[0, np.cumsum(old_df + new_df)].astype(np.int64)
            # each term's old postings, then its new ones (new rows are all larger)
            old_at = np.arange(old_ptr[-1]) + np.repeat(ptr[:-1] - old_ptr[:-1], old_df)
            new_at = np.arange(new_ptr[-1]) + np.repeat(ptr[:-1] + old_df - new_ptr[:-1], new_df)
            docs = np.empty(ptr[-1], dtype=np.int32)
            tf = np.empty(ptr[-1], dtype=np.result_type(self.tf_, new.tf))
            docs[old_at], tf[old_at] = self.docs_, self.tf_
            docs[new_at], tf[new_at] = new.docs + n_old, new.tf
            self.vocab_ = vocab
            self.ptr_, self.docs_, self.tf_ = ptr, docs, tf
            self.doc_len_ = np.concatenate([self.doc_len_, new_len])
        self._set_prior(catalog)
        self._build_scores()
        self.n_items_ = len(catalog)

    def _token_ids(self, texts: list[str], vocab: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
        """The texts' tokens as term ids (``int32``, text after text) and each text's length;
        unseen terms are appended to ``vocab`` in first-seen order."""
        tokens = self.analyzer.many(texts)
        lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
        # a missing term gets the next id, in first-seen order; the whole pass runs in C
        ids = defaultdict(count(len(vocab)).__next__, vocab)
        cols = np.fromiter(map(ids.__getitem__, chain.from_iterable(tokens)), dtype=np.int32,
                           count=int(lengths.sum()))
        vocab.update(ids)
        return cols, lengths

    def _count(self, chunks: Iterable[list[str]], vocab: dict[str, int]) -> tuple[Postings, np.ndarray]:
        """Term-major counts of the texts (``Postings``, rows from 0), a chunk of texts at a time
        (only one chunk's tokens live as Python strings), and each text's length in tokens
        (``float32``). Chunks' term ids are pooled into blocks of ``_BLOCK_TOKENS`` before each
        block is made term-major, so few blocks wait for the final assembly."""
        builder = PostingsBuilder()
        lens: list[np.ndarray] = []
        pending: list[tuple[np.ndarray, np.ndarray]] = []
        n_pending = 0
        for texts in chunks:
            cols, lengths = self._token_ids(texts, vocab)
            lens.append(lengths.astype(np.float32))
            pending.append((cols, lengths))
            n_pending += cols.size
            if n_pending >= _BLOCK_TOKENS:
                builder.add_tokens(*_pooled(pending), len(vocab))
                pending, n_pending = [], 0
        if pending:
            builder.add_tokens(*_pooled(pending), len(vocab))
        doc_len = np.concatenate(lens) if lens else np.zeros(0, dtype=np.float32)
        return builder.build(max(len(vocab), 1), small_counts=True), doc_len

    def _count_weighted(self, catalog: Catalog, chunks: Iterable[range], vocab: dict[str, int]
                        ) -> tuple[Postings, np.ndarray]:
        """:meth:`_count` with per-field weights: each field of a chunk of rows counted on its
        own, the counts and lengths summed with the fields' weights."""
        builder = PostingsBuilder()
        lens = []
        for rows in chunks:
            total: sp.csr_matrix | None = None
            length = np.zeros(len(rows), dtype=np.float32)
            for name in self.params.text_fields:
                w = np.float32(self.params.field_weights.get(name, 1.0))
                cols, n = self._token_ids(catalog.compose([name], rows), vocab)
                part = sp.csr_matrix((np.ones(cols.size, dtype=np.float32), cols, np.r_[0, np.cumsum(n)]),
                                     shape=(len(rows), max(len(vocab), 1)))
                part.sum_duplicates()
                part.data *= w
                length += n.astype(np.float32) * w
                if total is None:
                    total = part
                else:
                    total.resize(part.shape)
                    total = total + part
            if total is not None:
                builder.add_matrix(total)
            lens.append(length)
        doc_len = np.concatenate(lens) if lens else np.zeros(0, dtype=np.float32)
        return builder.build(max(len(vocab), 1)), doc_len

    def _set_prior(self, catalog: Catalog) -> None:
        pop = np.log1p(np.maximum(np.asarray(catalog.popularity, dtype=np.float64), 0.0))
        span = float(pop.max() - pop.min()) if pop.size else 0.0
        self.prior_ = (pop - pop.min()) / span if span > 0 else np.zeros_like(pop)

    def _build_scores(self) -> None:
        """Derive idf, average length, every posting's score and the top lists from the counts."""
        p = self.params
        ptr, docs, tf = self.ptr_, self.docs_, self.tf_
        n_docs, n_terms = self.n_docs, ptr.size - 1
        df = np.diff(ptr).astype(np.float64)
        idf = np.log(n_docs - df + 0.5) - np.log(df + 0.5)
        mean_idf = float(idf.mean()) if n_terms else 0.0
        idf[idf < 0] = p.epsilon * mean_idf
        doc_len = self.doc_len_.astype(np.float64)
        avgdl = float(doc_len.sum() / n_docs) if n_docs else 0.0
        rel_len = doc_len / avgdl if avgdl > 0 else np.zeros_like(doc_len)
        norm = p.k1 * (1 - p.b + p.b * rel_len)
        scores = np.empty(tf.size, dtype=np.float32)
        step = 1 << 20  # postings at a time: bounded float64 temporaries
        for a in range(0, tf.size, step):
            e = min(a + step, tf.size)
            term = np.searchsorted(ptr, np.arange(a, e), side="right") - 1
            c = tf[a:e].astype(np.float64)
            scores[a:e] = idf[term] * (c * (p.k1 + 1) / (c + norm[docs[a:e]]))
        self.idf_ = idf
        self.avgdl_ = avgdl
        self.scores_ = scores
        self._set_top_lists()

    def _set_top_lists(self) -> None:
        """Per term: best score; for long terms also the ``_TOP_LIST`` best documents
        (ascending) and the best score outside them."""
        ptr, scores = self.ptr_, self.scores_
        df = np.diff(ptr)
        n_terms = df.size
        max_score = np.zeros(n_terms, dtype=np.float32)
        full = np.flatnonzero(df > 0)
        if full.size:
            max_score[full] = np.maximum.reduceat(scores, ptr[full])
        cap = max_score.copy()
        long = np.flatnonzero(df > max(_LONG_DF, _TOP_LIST))
        long_row = np.full(n_terms, -1, dtype=np.int32)
        long_row[long] = np.arange(long.size, dtype=np.int32)
        top_docs = np.empty((long.size, _TOP_LIST), dtype=np.int32)
        top_scores = np.empty((long.size, _TOP_LIST), dtype=np.float32)
        for r, t in enumerate(long):
            a, e = ptr[t], ptr[t + 1]
            seg = scores[a:e]
            part = np.argpartition(seg, seg.size - _TOP_LIST - 1)
            cap[t] = seg[part[seg.size - _TOP_LIST - 1]]
            best = np.sort(part[seg.size - _TOP_LIST:])
            top_docs[r], top_scores[r] = self.docs_[a + best], seg[best]
        self.max_score_, self.cap_, self.long_row_ = max_score, cap, long_row
        self.top_docs_, self.top_scores_ = top_docs, top_scores
        df = np.diff(ptr)
        nonempty = np.flatnonzero(df > 0)
        # postings a query token reads on average (its whole list), tokens drawn like corpus tokens
        cf = _segment_sums(self.tf_, ptr, nonempty)
        read = df[nonempty].astype(np.float64)
        self.postings_per_token_ = float(read @ cf / cf.sum()) if cf.sum() > 0 else 0.0
        self._post_init()

    def _post_init(self) -> None:
        """Cached scalars derived from the state (after fit or load)."""
        # idfs well above float32 underflow: every stored score > 0, no touched document sums to 0
        self._positive = bool(self.idf_.size == 0 or self.idf_.min() > 1e-20)
        self._quality_prior = float(self.params.quality_prior)
        self._dense: dict[int, np.ndarray] = {}  # the frequent terms' dense rows (_dense_row)
        # the compiled scorer, imported here (numba costs ~0.3 s CPU to import: not paid by a
        # process that never fits or loads an index) and compiled now, not in a search
        from strategies import bm25_kernel

        bm25_kernel.warm(self.ptr_, self.docs_, self.scores_, self.prior_)
        self._kernel = bm25_kernel.touched_top_k

    # ------------------------------------------------------------------ querying
    def _token_key(self) -> str:
        a = self.analyzer
        return f"tokens:stem={a.stem},stop={a.stop_words},accents={a.strip_accents}"

    def _terms_of(self, tokens: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """A query's known term ids (ascending, unique) and how many times each occurs."""
        ids = [j for j in map(self._check_fitted().get, tokens) if j is not None]
        terms = sorted(set(ids))
        if len(terms) == len(ids):
            return np.array(terms, dtype=np.int64), np.ones(len(terms))
        n = dict.fromkeys(terms, 0)
        for j in ids:
            n[j] += 1
        return np.array(terms, dtype=np.int64), np.array(list(n.values()), dtype=np.float64)

    def _query_terms(self, queries: QueryBatch) -> list[tuple[np.ndarray, np.ndarray]]:
        tokens = queries.cached(self._tokens_key, self.analyzer.many)
        return [self._terms_of(t) for t in tokens]

    def _lookup(self, t: int, docs: np.ndarray) -> np.ndarray:
        """Score of term ``t`` in each of ``docs`` (``int32``, any order; 0 where ``t`` does not
        occur), by binary search in its posting list or a gather from its dense row."""
        dense = self._dense_row(t)
        if dense is not None:
            return dense.take(docs).astype(np.float64)
        a, e = int(self.ptr_[t]), int(self.ptr_[t + 1])
        lst = self.docs_[a:e]
        pos = np.minimum(np.searchsorted(lst, docs), e - a - 1)
        return np.where(lst.take(pos) == docs, self.scores_[a + pos], np.float32(0)).astype(np.float64)

    def _dense_row(self, t: int) -> np.ndarray | None:
        """Term ``t``'s scores over the whole corpus (``float32``, 0 where absent) when it occurs
        in at least 1/``_DENSE_LOOKUP`` of the documents, else None. Built at the term's first
        lookup and kept (at most ``_DENSE_ROWS`` terms): a gather then replaces a binary search
        in a list nearly as long as the corpus. Only where every stored score is > 0."""
        row = self._dense.get(t)
        if row is not None or not self._positive or len(self._dense) >= _DENSE_ROWS:
            return row
        a, e = int(self.ptr_[t]), int(self.ptr_[t + 1])
        if (e - a) * _DENSE_LOOKUP < self.n_docs:
            return None
        row = np.zeros(self.n_docs, dtype=np.float32)
        row[self.docs_[a:e]] = self.scores_[a:e]
        self._dense[t] = row
        return row

    def _pair_scores(self, terms: np.ndarray, weights: np.ndarray, docs: np.ndarray) -> np.ndarray:
        """BM25 of one query (terms ascending) for each of ``docs``, summed term by term in
        ascending term order."""
        docs = docs.astype(np.int32, copy=False)
        total = np.zeros(docs.size, dtype=np.float64)
        for t, w in zip(terms.tolist(), weights.tolist(), strict=True):
            total += w * self._lookup(t, docs)
        return total

    def _scratch(self) -> _Scratch:
        """Per-thread accumulators over the corpus, all zero between queries."""
        sc = getattr(self._local, "scratch", None)
        if sc is None or sc.seen.size != self.n_docs:
            sc = self._local.scratch = _Scratch(self.n_docs)
        return sc

    def _touched_top_k(self, terms: np.ndarray, weights: np.ndarray, k: int, ids: np.ndarray,
                       scores: np.ndarray) -> None:
        """One query's exact top k (prior included) over every document its terms touch, best
        first, written to the rows ``ids`` (``int64[k]``) and ``scores`` (``float32[k]``) and
        padded with ``PAD_ID`` and ``-inf``, by the compiled kernel
        (``strategies/bm25_kernel.py``): the lists are summed into the thread's accumulator, the
        k best totals kept in a heap, and only the touched entries reset."""
        sc = self._scratch()
        self._kernel(self.ptr_, self.docs_, self.scores_, terms, weights, self.prior_,
                     self._quality_prior, k, not self._positive, sc.acc, sc.seen, sc.touched,
                     ids, scores)

    def _retrieve(self, queries: QueryBatch, k: int) -> RetrievalResult:
        self._check_fitted()
        n_q = len(queries)
        ids = np.empty((n_q, k), dtype=np.int64)  # every row written and padded below
        out = np.empty((n_q, k), dtype=np.float32)
        for qi, (terms, weights) in enumerate(self._query_terms(queries)):
            self._touched_top_k(terms, weights, k, ids[qi], out[qi])
        return RetrievalResult(ids, out)

    def query_stats(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """How well BM25 answers each query, before the plan is chosen (one top-2 lookup each):
        ``bm25_top_frac``, the best document's score over the largest the query's terms reach
        (each term's best document; clipped to [0, 1]), near 1 when one document holds every
        query term at its best (an exact title); ``bm25_top_gap``, ``(best - second) / best``.
        Both 0 for a query without a known term or a match. A policy reading them can leave
        the costly strategies off where BM25 already finds the answer."""
        self._check_fitted()
        frac, gap = np.zeros(len(texts)), np.zeros(len(texts))
        ids, top = np.empty(2, dtype=np.int64), np.empty(2, dtype=np.float32)
        for qi, (terms, weights) in enumerate(self._query_terms(QueryBatch.of(list(texts)))):
            if not terms.size:
                continue
            self._touched_top_k(terms, weights, 2, ids, top)
            best, second = float(top[0]), float(top[1])
            reach = float(weights @ self.max_score_[terms].astype(np.float64))
            if not np.isfinite(best) or best <= 0 or reach <= 0:
                continue
            frac[qi] = min(best / reach, 1.0)
            gap[qi] = (best - max(second, 0.0)) / best if np.isfinite(second) else 1.0
        return {"bm25_top_frac": frac, "bm25_top_gap": gap}

    def score_items(self, queries: QueryBatch | Sequence[str] | str, rows: np.ndarray) -> np.ndarray:
        """BM25 scores of (query, item) pairs, for ranking features.

        Parameters
        ----------
        queries
            ``n`` query texts.
        rows
            ``int[n, m]`` catalog rows to score for each query (``int[m]`` when ``n`` is 1, as
            the dense strategy accepts); ``-1`` pads.

        Returns
        -------
        ``float64`` of ``rows``' shape: plain BM25 scores (no popularity prior), equal to what
        ``retrieve`` ranks by; 0 where nothing matches (blank query included), NaN at pads.
        """
        self._check_fitted()
        batch = QueryBatch.of(queries)
        rows = np.asarray(rows)
        if rows.ndim == 1 and len(batch) == 1:
            return self.score_items(batch, rows[None, :])[0]
        if rows.ndim != 2 or rows.shape[0] != len(batch):
            raise ConfigError(
                f"{self.name}.score_items needs rows of shape (n_queries, m) = ({len(batch)}, m); "
                f"got shape {rows.shape}."
            )
        self._check_rows(rows)
        out = np.where(rows == PAD_ID, np.nan, 0.0)
        if rows.size == 0:
            return out
        for qi, (terms, weights) in enumerate(self._query_terms(batch)):
            real = np.flatnonzero(rows[qi] >= 0)
            if terms.size and real.size:
                out[qi, real] = self._pair_scores(terms, weights, rows[qi, real])
        return out

    def _check_rows(self, rows: np.ndarray) -> None:
        if rows.size and not np.issubdtype(rows.dtype, np.integer):
            raise ConfigError(f"{self.name}.score_items needs integer rows; got dtype {rows.dtype}.")
        n_docs = self.n_docs
        bad = (rows < PAD_ID) | (rows >= n_docs)
        if bad.any():
            raise ConfigError(
                f"{self.name}.score_items: row {int(rows[bad][0])} is not in [0, {n_docs}) "
                f"(use -1 for padding)."
            )

    def term_weights(self) -> TermWeights:
        """Every (document, term) BM25 weight as a ``[n_docs, n_terms]`` CSC matrix over the
        index's own term-major postings (``float32`` scores, ``int32`` document ids; no copy):
        its one reader, the feature builder, assembles its own document-major copy a slice at a
        time, so the postings are never transposed whole."""
        vocab = self._check_fitted()
        shape = (self.n_docs, self.ptr_.size - 1)
        csc = sp.csc_matrix((self.scores_, self.docs_, self.ptr_), shape=shape, copy=False)
        return TermWeights(csc, vocab, self.analyzer, tuple(self.params.text_fields))

    def cost_ms(self, k: int) -> float:
        """Expected ms per query: a fixed overhead plus the postings a 3-token query reads."""
        if self.vocab_ is None:
            return super().cost_ms(k)
        # the compiled path, single-threaded (benchmarks/bm25.py, CPU per query): ~20 us fixed
        # on the movies, ~1.5 ns per posting read on 100k Zipf documents
        return 0.02 + 3 * self.postings_per_token_ * 1.5e-6 + 0.0001 * k

    def _check_fitted(self) -> dict[str, int]:
        """The vocabulary, or an error if neither fit nor load ran."""
        if self.vocab_ is None:
            raise NotFittedError(f"{self.name} is not fitted: call fit(catalog) or load(directory) first")
        return self.vocab_

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, np.ndarray]:
        return {"postings_ptr": self.ptr_, "postings_docs": self.docs_, "postings_tf": self.tf_,
                "postings_scores": self.scores_, "doc_len": self.doc_len_, "prior": self.prior_,
                "idf": self.idf_, "max_score": self.max_score_, "cap": self.cap_,
                "long_row": self.long_row_, "top_docs": self.top_docs_, "top_scores": self.top_scores_}

    def _manifest_extra(self) -> dict[str, Any]:
        return {"n_terms": len(self.vocab_ or {}), "n_postings": int(self.ptr_[-1]),
                "avgdl": self.avgdl_ if self.vocab_ is not None else 0.0,
                "postings_per_token": getattr(self, "postings_per_token_", 0.0)}

    def _save(self, directory: Path) -> None:
        vocab = self._check_fitted()
        terms = sorted(vocab, key=vocab.__getitem__)
        (directory / "vocab.json").write_text(json.dumps(terms, ensure_ascii=False), encoding="utf-8")
        for name, arr in self._state().items():
            np.save(directory / f"{name}.npy", np.ascontiguousarray(arr), allow_pickle=False)

    def _load(self, directory: Path, manifest: dict[str, Any]) -> None:
        try:
            terms = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise PersistenceError(f"{directory}/vocab.json: corrupt ({exc.msg})") from None
        arrays = {}
        for name in _ARRAYS:
            try:
                arrays[name] = np.load(directory / f"{name}.npy", mmap_mode="r", allow_pickle=False)
            except ValueError as exc:
                raise PersistenceError(f"{directory}/{name}.npy: not a readable .npy array ({exc})") from None
        ptr, docs = arrays["postings_ptr"], arrays["postings_docs"]
        n_items = int(manifest.get("n_items", arrays["doc_len"].shape[0]))
        n_terms = len(terms) if isinstance(terms, list) else -1
        n_post = int(ptr[-1]) if ptr.size else -1
        shapes = {name: a.shape for name, a in arrays.items()}
        expected: dict[str, tuple[int, ...]] = {
            "postings_ptr": (n_terms + 1,), "postings_docs": (n_post,), "postings_tf": (n_post,),
            "postings_scores": (n_post,), "doc_len": (n_items,), "prior": (n_items,),
            "idf": (n_terms,), "max_score": (n_terms,), "cap": (n_terms,), "long_row": (n_terms,)}
        n_long = int((arrays["long_row"] >= 0).sum()) if shapes["long_row"] == (n_terms,) else -1
        expected["top_docs"] = expected["top_scores"] = (n_long, shapes["top_docs"][-1])
        wrong = {n: s for n, s in expected.items() if shapes[n] != s}
        if wrong or ptr[0] != 0 or np.any(ptr[1:] < ptr[:-1]):
            found = ", ".join(f"{n}.npy {shapes[n]}" for n in (wrong or shapes))
            raise PersistenceError(
                f"{directory}: inconsistent files ({n_terms} terms in vocab.json, manifest n_items "
                f"{n_items}; {found})"
            )
        self.vocab_ = {t: i for i, t in enumerate(terms)}
        self.ptr_, self.docs_ = ptr, docs
        self.tf_, self.scores_ = arrays["postings_tf"], arrays["postings_scores"]
        self.doc_len_, self.prior_, self.idf_ = arrays["doc_len"], arrays["prior"], arrays["idf"]
        self.max_score_, self.cap_ = arrays["max_score"], arrays["cap"]
        self.long_row_, self.top_docs_ = arrays["long_row"], arrays["top_docs"]
        self.top_scores_ = arrays["top_scores"]
        self.avgdl_ = float(manifest.get("avgdl", 0.0))
        self.postings_per_token_ = float(manifest.get("postings_per_token", 0.0))
        self._post_init()


def _segment_sums(values: np.ndarray, ptr: np.ndarray, segments: np.ndarray, step: int = 1 << 22) -> np.ndarray:
    """``values[ptr[s]:ptr[s + 1]].sum()`` in float64 for each of ``segments`` (non-empty,
    ascending), reading ``values`` a bounded slice at a time (never a float64 copy of it all)."""
    out = np.zeros(segments.size, dtype=np.float64)
    starts, ends = ptr[segments], ptr[segments + 1]
    a = 0
    while a < segments.size:
        # the segments starting within the next step of values (at least one)
        e = max(int(np.searchsorted(starts, starts[a] + step, side="left")), a + 1)
        lo, hi = int(starts[a]), int(ends[e - 1])
        out[a:e] = np.add.reduceat(values[lo:hi].astype(np.float64), starts[a:e] - lo)
        a = e
    return out


def _pooled(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """One block's term ids and lengths from consecutive chunks' ``(ids, lengths)``."""
    if len(parts) == 1:
        return parts[0]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


class _Scratch:
    """One thread's scratch for the compiled kernel: zero/False outside a query."""

    def __init__(self, n_docs: int):
        self.acc = np.zeros(n_docs, dtype=np.float64)
        self.seen = np.zeros(n_docs, dtype=bool)
        self.touched = np.zeros(n_docs + 1, dtype=np.int32)  # one spare: the kernel writes before it counts
