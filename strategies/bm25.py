"""Okapi BM25 over a precomputed sparse term-score matrix.

Scores follow ``rank_bm25.BM25Okapi`` exactly (Robertson idf ``ln((N - n + 0.5) / (n + 0.5))``
with negative idfs replaced by ``epsilon * mean(idf)``; a repeated query token counts each time),
so the numbers we report can be checked against the reference library.

At fit time every (term, document) score
``idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))`` is computed once and stored
term-major (CSC of a ``docs x vocab`` matrix: one contiguous posting list per term). A query is
then a gather of its terms' posting lists and a sum, followed by a top-k over the documents that
matched; nothing at query time loops over documents in Python.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from itertools import chain, count
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from pydantic import Field, field_validator

from ltrr.catalog import Catalog
from ltrr.contracts.strategy import CandidateGenerator, ItemScorer, TermWeighted, TermWeights
from ltrr.errors import ConfigError, DataError, PersistenceError
from ltrr.params import Params
from ltrr.text import Analyzer
from ltrr.types import PAD_ID, QueryBatch, RetrievalResult

__all__ = ["BM25", "BM25Params"]

# Below this ratio of gathered postings to corpus size, summing per document by sorting the
# postings beats a dense accumulator over the whole corpus (measured on the benchmark corpora).
_SPARSE_SUM_RATIO = 0.125


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
    """

    k1: float = Field(1.5, ge=0.0, allow_inf_nan=False)
    b: float = Field(0.75, ge=0.0, le=1.0)
    epsilon: float = Field(0.25, ge=0.0, allow_inf_nan=False)
    text_fields: tuple[str, ...] = Field(("title", "text"), min_length=1)
    stem: bool = False
    stop_words: bool = False
    strip_accents: bool = False
    quality_prior: float = Field(0.0, ge=0.0, allow_inf_nan=False)

    @field_validator("text_fields")
    @classmethod
    def _fields_named(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [f for f in value if not f.strip()]
        if bad:
            raise ValueError(f"must hold non-empty field names, found {bad!r}")
        if len(set(value)) != len(value):
            raise ValueError("must not name a field twice")
        return value


class BM25(CandidateGenerator, ItemScorer, TermWeighted):
    """Okapi BM25 candidate generator (registry name ``"bm25"``).

    Learned state (after ``fit``): ``vocab_`` (term -> column), ``tf_`` (``docs x vocab`` CSR of
    term counts), ``idf_``, ``avgdl_``, the popularity ``prior_`` and the term-major score matrix
    used at query time. Only counts, vocabulary and prior are saved; scores are rebuilt on load,
    so a loaded index scores exactly like the saved one.
    """

    type_name = "bm25"
    format_version = 1
    Params = BM25Params

    def __init__(self, params: BM25Params | dict[str, Any] | None = None, *, name: str | None = None):
        super().__init__(params, name=name)
        p = self.params
        self.analyzer = Analyzer(stem=p.stem, stop_words=p.stop_words, strip_accents=p.strip_accents)
        self.vocab_: dict[str, int] | None = None
        self.tf_: sp.csr_matrix | None = None
        self.prior_: np.ndarray | None = None

    # ------------------------------------------------------------------ building
    def _fit(self, catalog: Catalog) -> None:
        vocab: dict[str, int] = {}
        self.tf_ = self._count(catalog.compose(self.params.text_fields), vocab)
        self.vocab_ = vocab
        self._set_prior(catalog)
        self._build_scores()

    def add_items(self, catalog: Catalog, new_rows: np.ndarray) -> None:
        """Index the items appended to ``catalog`` at rows ``new_rows``.

        The term counts of the old items are kept; idf, average length and every score are
        recomputed from them, so the result equals a fresh ``fit(catalog)``.
        """
        if self.tf_ is None or self.vocab_ is None:
            self.fit(catalog)
            return
        n_old = self.tf_.shape[0]
        rows = np.asarray(new_rows, dtype=np.int64).ravel()
        expected = np.arange(n_old, len(catalog), dtype=np.int64)
        if rows.shape != expected.shape or not np.array_equal(np.sort(rows), expected):
            raise DataError(
                f"{self.name}.add_items indexes items appended after the {n_old} it holds: "
                f"new_rows must be rows {n_old}..{len(catalog) - 1} of the catalog "
                f"({expected.size} rows); got {rows.size} rows {rows[:5].tolist()}..."
            )
        if rows.size:
            texts = [catalog.compose_one(int(i), self.params.text_fields) for i in expected]
            vocab = dict(self.vocab_)  # grown on a copy, so a failure leaves the index as it was
            new_tf = self._count(texts, vocab)
            n_terms = len(vocab)
            old = self.tf_  # new terms are new (empty) columns for the old rows
            old = sp.csr_matrix((old.data, old.indices, old.indptr), shape=(n_old, n_terms))
            new_tf = sp.csr_matrix((new_tf.data, new_tf.indices, new_tf.indptr),
                                   shape=(rows.size, n_terms))
            self.tf_ = sp.vstack([old, new_tf], format="csr", dtype=np.int32)
            self.vocab_ = vocab
        self._set_prior(catalog)
        self._build_scores()
        self.n_items_ = len(catalog)

    def _count(self, texts: Sequence[str], vocab: dict[str, int]) -> sp.csr_matrix:
        """Term-count matrix of ``texts``; unseen terms are appended to ``vocab`` in order."""
        tokens = self.analyzer.many(texts)
        lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
        # a missing term gets the next id, in first-seen order; the whole pass runs in C
        ids = defaultdict(count(len(vocab)).__next__, vocab)
        cols = np.fromiter(map(ids.__getitem__, chain.from_iterable(tokens)), dtype=np.int64,
                           count=int(lengths.sum()))
        vocab.update(ids)
        rows = np.repeat(np.arange(len(tokens), dtype=np.int64), lengths)
        counts = sp.coo_matrix((np.ones(cols.size, dtype=np.int32), (rows, cols)),
                               shape=(len(tokens), len(vocab)))
        tf = counts.tocsr()  # sums duplicate (doc, term) pairs into counts
        tf.sum_duplicates()
        tf.sort_indices()
        return tf

    def _set_prior(self, catalog: Catalog) -> None:
        pop = np.log1p(np.maximum(np.asarray(catalog.popularity, dtype=np.float64), 0.0))
        span = float(pop.max() - pop.min()) if pop.size else 0.0
        self.prior_ = (pop - pop.min()) / span if span > 0 else np.zeros_like(pop)

    def _build_scores(self) -> None:
        """Derive idf, average length and the term-major score matrix from the counts."""
        tf = self.tf_
        p = self.params
        n_docs, n_terms = tf.shape
        doc_len = np.asarray(tf.sum(axis=1), dtype=np.float64).ravel()
        df = np.bincount(tf.indices, minlength=n_terms).astype(np.float64)
        idf = np.log(n_docs - df + 0.5) - np.log(df + 0.5)
        mean_idf = float(idf.mean()) if n_terms else 0.0
        idf[idf < 0] = p.epsilon * mean_idf
        avgdl = float(doc_len.sum() / n_docs) if n_docs else 0.0
        rel_len = doc_len / avgdl if avgdl > 0 else np.zeros_like(doc_len)
        norm = p.k1 * (1 - p.b + p.b * rel_len)
        counts = tf.data.astype(np.float64)
        row_of = np.repeat(np.arange(n_docs), np.diff(tf.indptr))
        data = idf[tf.indices] * (counts * (p.k1 + 1) / (counts + norm[row_of]))
        scores = sp.csr_matrix((data, tf.indices, tf.indptr), shape=tf.shape)
        scores.eliminate_zeros()
        post = scores.tocsc()
        post.sort_indices()
        self.idf_ = idf
        self.avgdl_ = avgdl
        self.doc_len_ = doc_len
        self._norm = norm
        # posting lists: term t's documents are _ix[_ptr[t]:_ptr[t+1]] with scores _val[...]
        self._ptr = post.indptr.astype(np.int64)
        self._ix = post.indices.astype(np.int64 if n_docs >= 2**31 else np.int32)
        self._val = post.data
        self._nonneg = bool((post.data >= 0).all())  # false only if the mean idf is negative
        # expected postings per query token: df of a token drawn like corpus tokens
        cf = np.asarray(tf.sum(axis=0), dtype=np.float64).ravel()
        self._postings_per_token = float(df @ cf / cf.sum()) if cf.sum() > 0 else 0.0

    # ------------------------------------------------------------------ querying
    def _token_key(self) -> str:
        a = self.analyzer
        return f"tokens:stem={a.stem},stop={a.stop_words},accents={a.strip_accents}"

    def _query_terms(self, queries: QueryBatch) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query: its known term ids (unique) and how many times each occurs."""
        tokens = queries.cached(self._token_key(), self.analyzer.many)
        vocab = self.vocab_
        out = []
        for toks in tokens:
            counts: dict[int, int] = {}
            for t in toks:
                j = vocab.get(t)
                if j is not None:
                    counts[j] = counts.get(j, 0) + 1
            out.append((np.fromiter(counts.keys(), dtype=np.int64, count=len(counts)),
                        np.fromiter(counts.values(), dtype=np.float64, count=len(counts))))
        return out

    def _score_query(self, terms: np.ndarray, weights: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray] | np.ndarray:
        """One query's scores: ``(docs, scores)`` of the documents scoring non-zero (ascending
        docs), or, when the query gathers many postings, a dense ``float64[n_docs]`` vector."""
        ptr, ix, val = self._ptr, self._ix, self._val
        if terms.size == 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
        if terms.size == 1:
            lo, hi = ptr[terms[0]], ptr[terms[0] + 1]
            docs, scores = ix[lo:hi], val[lo:hi] * weights[0]
        else:
            starts, ends = ptr[terms], ptr[terms + 1]
            idx = np.concatenate([ix[a:e] for a, e in zip(starts, ends, strict=True)])
            contrib = np.concatenate([val[a:e] * w for a, e, w in zip(starts, ends, weights, strict=True)])
            n_docs = self.tf_.shape[0]
            if idx.size >= max(_SPARSE_SUM_RATIO * n_docs, 1):
                return np.bincount(idx, weights=contrib, minlength=n_docs)
            # few postings: sum per document by a stable sort (same order of addition as bincount)
            order = np.argsort(idx, kind="stable")
            idx = idx[order]
            first = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]]) if idx.size else idx
            docs, scores = idx[first], np.add.reduceat(contrib[order], first) if idx.size else contrib
        keep = scores != 0
        if not keep.all():
            docs, scores = docs[keep], scores[keep]
        return docs, scores

    def _query_top_k(self, terms: np.ndarray, weights: np.ndarray, k: int
                     ) -> tuple[np.ndarray, np.ndarray]:
        """One query's best ``k`` documents and scores (prior included), best first."""
        scored = self._score_query(terms, weights)
        qp = self.params.quality_prior
        if isinstance(scored, np.ndarray):
            if qp == 0 and self._nonneg:
                # unmatched documents score 0 and every score is >= 0: select on the dense
                # vector directly instead of first listing the matched documents
                top = _top_k_dense(scored, k)
                return top, scored[top]
            docs = np.flatnonzero(scored)
            scored = docs, scored[docs]
        docs, scores = scored
        if qp > 0 and docs.size:
            scores = scores + qp * self.prior_[docs]
        top = _top_k_sorted(docs, scores, k)
        return docs[top], scores[top]

    def _retrieve(self, queries: QueryBatch, k: int) -> RetrievalResult:
        self._check_fitted()
        n_q = len(queries)
        ids = np.full((n_q, k), PAD_ID, dtype=np.int64)
        out = np.full((n_q, k), -np.inf, dtype=np.float32)
        for qi, (terms, weights) in enumerate(self._query_terms(queries)):
            docs, scores = self._query_top_k(terms, weights, k)
            ids[qi, : docs.size] = docs
            out[qi, : docs.size] = scores
        return RetrievalResult(ids, out)

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
        if rows.size and not np.issubdtype(rows.dtype, np.integer):
            raise ConfigError(f"{self.name}.score_items needs integer rows; got dtype {rows.dtype}.")
        n_docs = self.tf_.shape[0]
        bad = (rows < PAD_ID) | (rows >= n_docs)
        if bad.any():
            raise ConfigError(
                f"{self.name}.score_items: row {int(rows[bad][0])} is not in [0, {n_docs}) "
                f"(use -1 for padding)."
            )
        n_q, m = rows.shape
        out = np.where(rows == PAD_ID, np.nan, 0.0)
        if rows.size == 0:
            return out
        terms = self._query_terms(batch)
        lengths = np.array([t.size for t, _ in terms], dtype=np.int64)
        q_cols = np.concatenate([t for t, _ in terms]) if lengths.sum() else np.empty(0, np.int64)
        q_vals = np.concatenate([w for _, w in terms]) if lengths.sum() else np.empty(0)
        q_ptr = np.r_[0, np.cumsum(lengths)]
        query_mat = sp.csr_matrix((q_vals, q_cols, q_ptr), shape=(n_q, len(self.vocab_)))
        flat = rows.ravel()
        real = flat >= 0
        pair_q = np.repeat(np.arange(n_q), m)[real]
        docs = flat[real]
        tf = self.tf_[docs]
        counts = tf.data.astype(np.float64)
        row_of = np.repeat(docs, np.diff(tf.indptr))
        k1 = self.params.k1
        data = self.idf_[tf.indices] * (counts * (k1 + 1) / (counts + self._norm[row_of]))
        doc_scores = sp.csr_matrix((data, tf.indices, tf.indptr), shape=tf.shape)
        pair_scores = np.asarray(doc_scores.multiply(query_mat[pair_q]).sum(axis=1)).ravel()
        out.ravel()[np.flatnonzero(real)] = pair_scores
        return out

    def term_weights(self) -> TermWeights:
        """Every (document, term) BM25 weight ``idf * tf (k1 + 1) / (tf + k1 (1 - b + b dl/avgdl))``
        as a ``[n_docs, n_terms]`` CSR matrix with the structure of the term counts."""
        self._check_fitted()
        tf = self.tf_
        k1 = float(self.params.k1)
        counts = tf.data.astype(np.float64)
        row_of = np.repeat(np.arange(tf.shape[0]), np.diff(tf.indptr))
        data = self.idf_[tf.indices] * (counts * (k1 + 1.0) / (counts + self._norm[row_of]))
        weights = sp.csr_matrix((data, tf.indices.copy(), tf.indptr.copy()), shape=tf.shape)
        return TermWeights(weights, self.vocab_, self.analyzer, tuple(self.params.text_fields))

    def cost_ms(self, k: int) -> float:
        """Expected ms per query: a fixed overhead plus the postings a 3-token query gathers."""
        if self.tf_ is None:
            return super().cost_ms(k)
        # constants measured single-threaded by benchmarks/bm25.py
        return 0.04 + 3 * self._postings_per_token * 6e-6 + 0.0005 * k

    def _check_fitted(self) -> None:
        if self.tf_ is None or self.vocab_ is None:
            raise ConfigError(f"{self.name} is not fitted; call fit(catalog) or load(directory) first.")

    # ------------------------------------------------------------------ persistence
    def _manifest_extra(self) -> dict[str, Any]:
        return {"n_terms": len(self.vocab_ or {})}

    def _save(self, directory: Path) -> None:
        self._check_fitted()
        terms = sorted(self.vocab_, key=self.vocab_.__getitem__)
        (directory / "vocab.json").write_text(json.dumps(terms, ensure_ascii=False), encoding="utf-8")
        sp.save_npz(directory / "tf.npz", self.tf_, compressed=True)
        np.save(directory / "prior.npy", self.prior_, allow_pickle=False)

    def _load(self, directory: Path, manifest: dict[str, Any]) -> None:
        try:
            terms = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise PersistenceError(f"{directory}/vocab.json: corrupt ({exc.msg})") from None
        tf = sp.load_npz(directory / "tf.npz").tocsr()
        prior = np.load(directory / "prior.npy", allow_pickle=False)
        n_items = int(manifest.get("n_items", tf.shape[0]))
        if not isinstance(terms, list) or tf.shape != (n_items, len(terms)) or prior.shape != (n_items,):
            raise PersistenceError(
                f"{directory}: inconsistent files (tf.npz {tf.shape}, {len(terms)} terms in "
                f"vocab.json, prior.npy {prior.shape}, manifest n_items {n_items})"
            )
        self.vocab_ = {t: i for i, t in enumerate(terms)}
        self.tf_ = tf.astype(np.int32)
        self.prior_ = prior.astype(np.float64)
        self._build_scores()


def _top_k_sorted(docs: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` best of ``scores``: higher score first, lower doc on ties.

    ``docs`` must be ascending, so a stable sort on the negated score breaks ties by doc.
    """
    n = scores.size
    if n <= k:
        return np.argsort(-scores, kind="stable")
    # partition k + 1 places so the best score left out shows whether the k-th is tied with it
    neg = -scores
    part = np.argpartition(neg, k)
    top, kth = part[:k], scores[part[:k]].min()
    if scores[part[k]] < kth:
        return top[np.lexsort((top, neg[top]))]
    # a tie straddles the cut: every score tied with the k-th competes, lower docs first
    cand = np.flatnonzero(scores >= kth)
    return cand[np.argsort(neg[cand], kind="stable")[:k]]


def _top_k_dense(scores: np.ndarray, k: int) -> np.ndarray:
    """Rows of the ``k`` best positive entries of a non-negative dense score vector, best first,
    lower row on ties; zero entries (documents that matched nothing) are never returned."""
    neg = -scores
    if scores.size > k:
        part = np.argpartition(neg, k)
        top = part[:k]
        kth = scores[top].min()
        if kth > 0 and scores[part[k]] < kth:
            return top[np.lexsort((top, neg[top]))]
        cand = np.flatnonzero(scores >= kth) if kth > 0 else np.flatnonzero(scores)
    else:
        cand = np.flatnonzero(scores)
    return cand[np.argsort(neg[cand], kind="stable")[:k]]
