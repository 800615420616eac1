"""Ranker features of a candidate union, computed batched for all candidates of a query.

The schema (ordered names + version + fingerprint) depends on the engine's strategies: a feature
whose source is not in the engine is not in the schema. Groups, in order:

* provenance, per strategy ``s``: ``s_score``, ``s_rank``, ``s_found`` — score and rank are NaN
  when ``s`` did not find the item, so LightGBM treats them as missing rather than 0;
* what rank fusion knows, per strategy ``s``: ``s_rr`` = ``1 / (RRF_K + rank)`` (0 when ``s`` did
  not find the item), and ``fused_rrf``, their sum: the reciprocal-rank-fusion score itself, the
  prior the ranker starts from (:mod:`ltrr.ranking.lambdamart`);
* a strategy the plan did not run (depth 0 in :attr:`Candidates.depths`) has ``s_found`` and
  ``s_rr`` NaN too: "not found" means "ranked below the depth drawn" only where ``s`` looked, and
  a ranker trained on the pages of varying plans must not read "dense was off" as "dense did not
  find this relevant item";
* ``s_match``, per strategy declaring :class:`~ltrr.contracts.strategy.ItemScorer` (dense:
  cosine; BM25 over other fields: its score), computed for *every* candidate, also those ``s``
  did not retrieve (except the BM25 strategy reused for ``bm25_text``);
* ``s_ctr``, ``s_impressions``, ``s_clicks``, per strategy declaring
  :class:`~ltrr.contracts.strategy.ItemStatistics` (the click memory): decayed counts of the
  (query, item) pair (impressions weighted by the examination of the position shown) and the
  strategy's smoothed CTR of them (``ItemStatistics.smoothed_ctr``: for the click memory its
  prior CTR for a pair never shown, so an item below every page so far sits between the clicked
  and the shown-but-ignored ones);
* ``bm25_title``, ``bm25_text``: Okapi BM25 of the query against the title and the indexed text;
  ``bm25_text_frac``: ``bm25_text`` over the largest BM25 the query's terms reach in the corpus
  (each term's best document weight, summed), a lexical score on one [0, 1] scale for every query;
* ``title_overlap``, ``text_overlap``: fraction of query tokens in the title / text;
  ``title_trigram_overlap``: fraction of the query's character trigrams in the title;
* ``log_popularity``; query hints ``query_tokens``, ``query_chars``, ``query_digit_frac``,
  ``query_has_year``, ``query_single_token``; ``n_found_by``, ``best_rank``.

Every group is a handful of numpy operations over the whole union, no Python loop over candidates:
the lexical groups walk the candidates' rows of one CSR holding the title BM25, text BM25 and
title-trigram matrices side by side once, in one compiled function that counts the query's terms
through a lookup table (:class:`_LexicalMatches`, :mod:`ltrr.features_kernels`), so a request
costs no vocabulary-sized vector and no sparse-matrix indexing. A candidate's row depends on the query and on that candidate alone (never on the other
candidates of the union), so the page any smaller plan would have shown can be recomputed from a
max-depth decision by rewriting the provenance columns only (:class:`ProvenanceColumns`, used by
``simulators.hindsight``).

:func:`monotone_directions` gives the direction in which each feature can only raise the score
(LightGBM ``monotone_constraints``): a higher rank in any strategy's list, a better text match or
a higher fused score never lowers an item, whatever a few noisy clicks say.
"""

from __future__ import annotations

import hashlib
import re
import threading
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal, NamedTuple

import numpy as np
import scipy.sparse as sp

from ltrr import registry
from ltrr.catalog import Catalog
from ltrr.contracts.strategy import (
    CandidateGenerator,
    ItemScorer,
    ItemStatistics,
    TermWeighted,
    TermWeights,
)
from ltrr.text import Analyzer, fold_accents
from ltrr.types import Candidates, QueryBatch

SCHEMA_VERSION = 3
#: the reciprocal-rank constant of the ``s_rr`` and ``fused_rrf`` features (Cormack et al. 2009)
RRF_K = 60.0

_WORD = re.compile(r"\w+")
#: the last columns of every schema, in order (one block :meth:`FeatureBuilder.build` fills)
_TAIL = ("bm25_title", "bm25_text", "bm25_text_frac", "title_overlap", "text_overlap", "title_trigram_overlap",
         "log_popularity", "query_tokens", "query_chars", "query_digit_frac", "query_has_year",
         "query_single_token", "n_found_by", "best_rank")
_YEAR = re.compile(r"\b(1[89]\d\d|20\d\d)s?\b")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class FeatureSchema:
    """Ordered feature names plus a version; ``fingerprint`` identifies the exact layout."""

    names: tuple[str, ...]
    version: int = SCHEMA_VERSION

    @property
    def fingerprint(self) -> str:
        blob = f"{self.version}:" + "\x1f".join(self.names)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    def to_dict(self) -> dict:
        return {"names": list(self.names), "version": self.version, "fingerprint": self.fingerprint}

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSchema:
        return cls(tuple(d["names"]), int(d["version"]))

    def index(self, name: str) -> int:
        return self.names.index(name)

    def diff(self, other: FeatureSchema) -> tuple[list[str], list[str]]:
        """Names of ``other`` missing here, and names here that ``other`` lacks."""
        mine, theirs = set(self.names), set(other.names)
        return [n for n in other.names if n not in mine], [n for n in self.names if n not in theirs]

    @property
    def strategies(self) -> tuple[str, ...]:
        """The strategies with provenance columns, in column order."""
        return tuple(n[: -len("_found")] for n in self.names if n.endswith("_found"))


#: features that can only raise an item's score as they grow (+1) or fall (-1); suffixes apply to
#: every strategy's columns. Popularity, query hints and click-memory impressions are left free.
_INCREASING_SUFFIXES = ("_score", "_found", "_rr", "_match", "_ctr", "_clicks")
_INCREASING = ("fused_rrf", "bm25_title", "bm25_text", "bm25_text_frac", "title_overlap", "text_overlap",
               "title_trigram_overlap", "n_found_by")
_DECREASING_SUFFIXES = ("_rank",)


def monotone_directions(schema: FeatureSchema) -> list[int]:
    """LightGBM ``monotone_constraints`` for ``schema``: +1, -1 or 0 per feature, in order."""
    out = []
    for n in schema.names:
        if n in _INCREASING or n.endswith(_INCREASING_SUFFIXES):
            out.append(1)
        elif n.endswith(_DECREASING_SUFFIXES):  # includes best_rank
            out.append(-1)
        else:
            out.append(0)
    return out


def click_exposure_columns(schema: FeatureSchema) -> list[int]:
    """Columns of ``schema`` that depend on how much the engine showed a (query, item) pair
    before, for every strategy with click statistics (``s_ctr`` in the schema: the click memory):
    its provenance (``s_score``, ``s_rank``, ``s_found``, ``s_rr``: the memory lists an item once
    it has clicks, which an item shown on top collects first) and its raw counts
    (``s_impressions``, ``s_clicks``). ``s_ctr`` is not among them: smoothed and examination-
    weighted, it estimates attractiveness wherever the item was shown (see
    :class:`~ltrr.ranking.lambdamart.LambdaMARTParams.memory_in_trees`)."""
    memory = [n[: -len("_ctr")] for n in schema.names if n.endswith("_ctr")]
    wanted = {f"{m}_{suffix}" for m in memory for suffix in ("score", "rank", "found", "rr", "impressions", "clicks")}
    return [i for i, n in enumerate(schema.names) if n in wanted]


def reciprocal_ranks(ranks: np.ndarray, k: float = RRF_K) -> np.ndarray:
    """``1 / (k + rank)`` in float64, 0 where the rank is NaN or inf (not found); ranks >= 1.

    Three whole-array operations, no mask (it is on every request's path): inf gives 1 / inf = 0
    and ``fmax`` turns NaN into 0, every other term being > 0."""
    rr = np.add(ranks, k, dtype=np.float64)
    np.divide(1.0, rr, out=rr)
    return np.fmax(rr, 0.0, out=rr)


class ProvenanceColumns:
    """The columns of ``schema`` that depend on which strategies drew a candidate, and how to
    rewrite them for a smaller plan.

    A candidate of a max-depth union belongs to a plan's union through the strategies that rank
    it within the plan's depths (``keep``); its row under that plan is its max-depth row with the
    other strategies' provenance cleared and the per-candidate aggregates recomputed exactly as
    :meth:`FeatureBuilder.build` computes them. ``match_when_off`` is the builder's: under
    ``"missing"`` a strategy the plan does not run has its ``_match`` column cleared too.
    """

    def __init__(self, schema: FeatureSchema, strategies: tuple[str, ...] | None = None, *,
                 match_when_off: Literal["score", "missing"] = "score"):
        if match_when_off not in ("score", "missing"):
            raise ValueError(f"match_when_off must be 'score' or 'missing', got {match_when_off!r}")
        self.strategies = tuple(schema.strategies if strategies is None else strategies)
        missing = [f"{s}_{part}" for s in self.strategies for part in ("score", "rank", "found", "rr")
                   if f"{s}_{part}" not in schema.names]
        if missing:
            raise ValueError(f"the feature schema has no provenance columns {missing}")
        order = {s: i for i, s in enumerate(schema.strategies)}
        if sorted(order.get(s, -1) for s in self.strategies) != list(range(len(schema.strategies))):
            raise ValueError(f"strategies {self.strategies} are not the schema's {schema.strategies}")
        # columns in the caller's strategy order; sums run in the schema's order (bit-exact floats)
        self._schema_order = np.array([self.strategies.index(s) for s in schema.strategies])
        cols = {part: np.array([schema.index(f"{s}_{part}") for s in self.strategies])
                for part in ("score", "rank", "found", "rr")}
        self._score, self._rank, self._found, self._rr = cols["score"], cols["rank"], cols["found"], cols["rr"]
        self._fused = schema.index("fused_rrf")
        self._n_found = schema.index("n_found_by")
        self._best_rank = schema.index("best_rank")
        # (strategy position in the caller's order, its _match column) cleared when it is off
        self._match_off = [(j, schema.index(f"{s}_match")) for j, s in enumerate(self.strategies)
                           if match_when_off == "missing" and f"{s}_match" in schema.names]

    def mask(self, X: np.ndarray, keep: np.ndarray, ranks: np.ndarray, ran: np.ndarray | None = None
             ) -> np.ndarray:
        """Rows ``X`` (modified in place and returned) as members of a plan through ``keep``
        (``bool[n, S]``, caller's strategy order); ``ranks`` (``float[n, S]``, inf or NaN = not
        found) are the candidates' ranks in the max-depth lists; ``ran`` (``bool[n, S]`` or
        ``bool[S]``, default all) says which strategies the plan runs (depth > 0): the others'
        ``found`` and ``rr`` (and ``_match`` under ``match_when_off="missing"``) are missing, as
        :meth:`FeatureBuilder.build` writes them."""
        keep = np.asarray(keep, dtype=bool)
        r = np.where(keep, np.asarray(ranks, dtype=np.float64), np.nan)
        X[:, self._score] = np.where(keep, X[:, self._score], np.nan)
        X[:, self._rank] = np.where(keep, X[:, self._rank], np.nan)
        X[:, self._found] = np.where(keep, X[:, self._found], 0.0)
        rr = reciprocal_ranks(r)
        X[:, self._rr] = rr
        X[:, self._fused] = rr[:, self._schema_order].sum(axis=1)
        if ran is not None:
            off = ~np.broadcast_to(np.asarray(ran, dtype=bool), keep.shape)
            X[:, self._found] = np.where(off, np.nan, X[:, self._found])
            X[:, self._rr] = np.where(off, np.nan, X[:, self._rr])
            for j, c in self._match_off:
                X[:, c] = np.where(off[:, j], np.nan, X[:, c])
        X[:, self._n_found] = keep.sum(axis=1)
        X[:, self._best_rank] = np.fmin.reduce(r, axis=1) if r.shape[1] else np.nan
        return X


def _padded(text: str) -> str:
    return " " + _SPACES.sub(" ", fold_accents(text).lower()).strip() + " "


def _trigrams(text: str) -> list[str]:
    s = _padded(text)
    return [s[i:i + 3] for i in range(len(s) - 2)] if len(s) > 3 else []


def _trigram_set(text: str) -> set[str]:
    """The distinct members of ``_trigrams(text)`` (a query's, built without the list)."""
    s = _padded(text)
    return {s[i:i + 3] for i in range(len(s) - 2)} if len(s) > 3 else set()


def _term_counts(tokens: list[str], vocab: Mapping[str, int]) -> dict[int, int]:
    """How many times each in-vocabulary token occurs, by column."""
    counts: dict[int, int] = {}
    for t in tokens:
        j = vocab.get(t)
        if j is not None:
            counts[j] = counts.get(j, 0) + 1
    return counts


class _QueryTerms(NamedTuple):
    """One query's terms in :class:`_LexicalMatches`' stacked columns."""

    #: stacked columns (title terms, then text terms ascending, then trigrams)
    cols: np.ndarray
    #: each column's count in the query (1 for a trigram), in the lookup table's dtype (``int8``
    #: when every count fits, else ``int32``)
    counts: np.ndarray
    #: distinct title tokens, distinct text tokens, distinct trigrams (known or not)
    distinct: tuple[int, int, int]
    #: the largest BM25 the query's text terms reach in the corpus (each term's best document)
    reach: float
    #: ``distinct`` floored at 1, ``float32[3]``: the overlap features' denominators
    per_field: np.ndarray


def _stack_rows(blocks: Sequence[sp.csr_matrix | sp.csc_matrix], text_block: int, rows_per_chunk: int = 65536
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``blocks`` (``[n_docs, n_terms_b]`` each, CSR or CSC) side by side as one CSR with sorted
    indices: ``(indptr int64, indices int32, data float32, best)``, ``best`` the largest entry of
    each column of ``blocks[text_block]`` floored at 0. Assembled ``rows_per_chunk`` documents at a
    time into preallocated arrays, so a term-major (CSC) index is never transposed whole: at a
    million documents a whole transpose beside the result would add ~0.5 GB at the peak."""
    n = blocks[0].shape[0]
    nnz = sum(int(b.nnz) for b in blocks)
    indptr = np.zeros(n + 1, dtype=np.int64)
    indices = np.empty(nnz, dtype=np.int32)
    data = np.empty(nnz, dtype=np.float32)
    best = np.zeros(blocks[text_block].shape[1], dtype=np.float32)
    pos = 0
    for a in range(0, n, rows_per_chunk):
        b = min(n, a + rows_per_chunk)
        parts = [sp.csr_matrix(blk[a:b]) for blk in blocks]
        text = parts[text_block]
        np.maximum.at(best, text.indices, text.data.astype(np.float32, copy=False))
        part = sp.hstack(parts, format="csr", dtype=np.float32)
        part.sort_indices()
        k = int(part.nnz)
        indices[pos: pos + k] = part.indices
        data[pos: pos + k] = part.data
        indptr[a + 1: b + 1] = pos + part.indptr[1:]
        pos += k
    if pos != nnz:  # explicit entries dropped or added by a conversion: never silently misaligned
        raise ValueError(f"stacking the lexical matrices kept {pos} of {nnz} entries")
    return indptr, indices, data, best


class _LexicalMatches:
    """The title BM25, text BM25 and title-trigram matrices (each docs x terms) side by side in
    one CSR, columns offset per field: a compiled kernel (:func:`ltrr.features_kernels.match_rows`)
    walks each candidate's row once per query, with no vocabulary-sized vector.

    Only the query's own terms are added, per row in column order from 0.0, in float64: the
    sum ``scipy``'s CSR x dense-vector product forms (its other terms are ``w * 0``, which move no
    sum), so the values equal ``rows @ counts`` bit for bit (tests/ltrr/test_features_reference.py).
    The ``bm25_text_frac`` scale is summed term by term in column order; a BLAS dot product over
    the vocabulary may group three or more terms differently, which can move that float64 sum by
    an ulp (the float32 feature, in the queries tested, never).
    """

    def __init__(self, title: TermWeights, text: TermWeights, trigrams: sp.csr_matrix,
                 trigram_vocab: Mapping[str, int]):
        # the tokenizers and vocabularies only: keeping the TermWeights would keep their weight
        # matrices alive beside the stacked copy below (hundreds of MB at a million documents)
        self._title_analyze, self._title_vocab = title.analyze, title.vocabulary
        self._text_analyze, self._text_vocab = text.analyze, text.vocabulary
        # analyzers that differ at most in folding accents give an ASCII query the same tokens
        a, b = title.analyze, text.analyze
        self._same_ascii_tokens = (isinstance(a, Analyzer) and isinstance(b, Analyzer)
                                   and replace(a, strip_accents=False) == replace(b, strip_accents=False))
        blocks = [title.weights, text.weights, trigrams]
        self._offsets = [0, blocks[0].shape[1], blocks[0].shape[1] + blocks[1].shape[1]]
        # each title trigram's stacked column (the trigram block's offset added once, here)
        self._tri_cols = {g: self._offsets[2] + j for g, j in trigram_vocab.items()}
        indptr, indices, data, best = _stack_rows(blocks, text_block=1)
        self._indptr = indptr
        self._n_cols = sum(b.shape[1] for b in blocks)
        # per thread, a lookup table over the stacked columns (a query column's count), 0 except
        # while a query uses it: filling a fresh one per request writes ~the vocabulary size in
        # bytes (73 kB on movies)
        self._tables = threading.local()
        self._indices = indices
        self._data = data
        # per text term, its largest weight over the documents (the ``bm25_text_frac`` scale), >= 0
        self._text_term_best = best
        # the compiled row match, imported here (numba costs ~0.3 s CPU to import: not paid by a
        # process that never builds features) and compiled or loaded now, never in a request
        from ltrr import features_kernels

        features_kernels.warm(indptr, indices, data)
        self._kernel = features_kernels.match_rows

    def query(self, text: str) -> _QueryTerms:
        """The query's terms in every field."""
        title_toks = self._title_analyze(text)
        text_toks = title_toks if self._same_ascii_tokens and text.isascii() else self._text_analyze(text)
        grams = _trigram_set(text)
        title_c = _term_counts(title_toks, self._title_vocab)
        text_c = _term_counts(text_toks, self._text_vocab)
        text_ids = sorted(text_c)
        tri = set(map(self._tri_cols.get, grams))  # stacked columns already
        tri.discard(None)
        o_text = self._offsets[1]
        cols = [*title_c, *[o_text + j for j in text_ids], *tri]
        counts = [*title_c.values(), *[text_c[j] for j in text_ids]]
        wide = max(counts, default=1) > 127
        counts += [1] * len(tri)
        best = self._text_term_best
        reach = 0.0
        for j in text_ids:  # ascending, as scipy's dot product over the vocabulary adds them
            reach += text_c[j] * float(best[j])
        distinct = (len(set(title_toks)), len(set(text_toks)), len(grams))
        return _QueryTerms(np.array(cols, dtype=self._indices.dtype),
                           np.array(counts, dtype=np.int32 if wide else np.int8), distinct, reach,
                           np.array([max(d, 1) for d in distinct], dtype=np.float32))

    def write(self, items: np.ndarray, q: _QueryTerms, out: np.ndarray, col: int) -> None:
        """Write ``bm25_title``, ``bm25_text``, ``bm25_text_frac``, ``title_overlap``,
        ``text_overlap``, ``title_trigram_overlap`` of every candidate into
        ``out[:, col: col + 6]``: per field the sum of ``weight x count`` over the query's terms
        in the candidate's row (BM25, float64 cast to float32) and how many of the query's terms
        the row holds over the query's distinct terms (overlap, float32)."""
        items = np.ascontiguousarray(items, dtype=np.int64)
        if q.counts.dtype == np.int8:
            table = getattr(self._tables, "int8", None)
            if table is None:
                table = self._tables.int8 = np.zeros(self._n_cols, dtype=np.int8)
        else:  # a count above 127: a fresh wide table (a query repeating one term 128 times)
            table = np.zeros(self._n_cols, dtype=np.int32)
        bad = self._kernel(items, self._indptr, self._indices, self._data, table, q.cols, q.counts,
                           self._offsets[1], self._offsets[2], q.reach, q.per_field, out, col)
        if bad >= 0:
            raise IndexError(f"candidate item {int(items[bad])} is not a catalog row "
                             f"(the catalog has {self._indptr.size - 1} items)")


class FeatureBuilder:
    """Builds the ``float32[n_candidates, n_features]`` matrix for one query's union.

    Parameters
    ----------
    catalog
        The engine's catalog (row ``i`` = item ``i``).
    strategies
        Strategy instances by name (the engine's), or just their names; with names only, the
        features that need a strategy's state (``_match``, click-memory counts) are left out.
        Which strategies feed which features is fixed here (it is the schema); :meth:`build`
        reads the instances it is given, so a strategy swapped for a retrained one is used.
    text_fields
        Fields composed into the text that ``bm25_text`` and ``text_overlap`` match against.
    analyzer
        Tokenizer of the title/text fields when no BM25 strategy over those fields is reused.
    match_when_off
        ``"score"``: a strategy's ``s_match`` is computed for every candidate even when the plan
        left ``s`` off (dense then encodes the query here); ``"missing"``: NaN then, so a plan
        that skips a strategy skips its cost (``ranker.match_when_off`` in the config).
    """

    def __init__(self, catalog: Catalog, strategies: Sequence[str] | Mapping[str, CandidateGenerator],
                 text_fields: Sequence[str], analyzer: Analyzer | None = None,
                 match_when_off: Literal["score", "missing"] = "score"):
        if match_when_off not in ("score", "missing"):
            raise ValueError(f"match_when_off must be 'score' or 'missing', got {match_when_off!r}")
        self.match_when_off = match_when_off
        instances = dict(strategies) if isinstance(strategies, Mapping) else {}
        self._instances = instances
        self.strategies = tuple(strategies)
        self.text_fields = tuple(text_fields)
        self.log_pop = np.log1p(np.maximum(np.asarray(catalog.popularity, dtype=np.float64), 0.0)).astype(np.float32)
        bm25_cls = registry.get("strategy", "bm25")
        analyzer_opts = {"strip_accents": True} if analyzer is None else {
            "strip_accents": analyzer.strip_accents, "stem": analyzer.stem, "stop_words": analyzer.stop_words}
        reused, text_weights = None, None
        for name, strat in instances.items():
            if isinstance(strat, TermWeighted):
                weights = strat.term_weights()
                if weights.text_fields == self.text_fields:
                    reused, text_weights = name, weights
                    break
        if text_weights is None:
            text_weights = bm25_cls({"text_fields": list(self.text_fields), **analyzer_opts}).fit(catalog).term_weights()
        title_weights = bm25_cls({"text_fields": ["title"], **analyzer_opts}).fit(catalog).term_weights()
        tri_vocab: dict[str, int] = {}
        # C arrays, not lists: a million titles hold tens of millions of trigram ids
        indptr, indices = array("q", [0]), array("i")
        for title in catalog.titles:
            ids = {tri_vocab.setdefault(g, len(tri_vocab)) for g in _trigrams(title)}
            indices.extend(sorted(ids))
            indptr.append(len(indices))
        title_tri = sp.csr_matrix(
            (np.ones(len(indices), dtype=np.float32), np.frombuffer(indices, dtype=np.int32),
             np.frombuffer(indptr, dtype=np.int64).astype(np.int32 if len(indices) < 2**31 else np.int64)),
            shape=(len(catalog), max(len(tri_vocab), 1)))
        del indices, indptr
        self._lexical = _LexicalMatches(title_weights, text_weights, title_tri, tri_vocab)
        self._match = [n for n, s in instances.items() if isinstance(s, ItemScorer) and n != reused]
        self._memory = [n for n, s in instances.items() if isinstance(s, ItemStatistics)]
        names: list[str] = []
        for s in self.strategies:
            names += [f"{s}_score", f"{s}_rank", f"{s}_found"]
        names += [f"{s}_rr" for s in self.strategies] + ["fused_rrf"]
        names += [f"{n}_match" for n in self._match]
        for n in self._memory:
            names += [f"{n}_ctr", f"{n}_impressions", f"{n}_clicks"]
        names += _TAIL
        self.schema = FeatureSchema(tuple(names))
        col = {n: i for i, n in enumerate(names)}
        self._n_features = len(names)
        self._fused_col = col["fused_rrf"]
        self._match_cols = [(n, col[f"{n}_match"]) for n in self._match]
        self._memory_cols = [(n, col[f"{n}_ctr"], col[f"{n}_impressions"], col[f"{n}_clicks"]) for n in self._memory]
        self._tail = col[_TAIL[0]]

    def build(self, query: str | QueryBatch, cands: Candidates,
              strategies: Mapping[str, CandidateGenerator] | None = None) -> np.ndarray:
        """Features of every candidate of one query (``query`` may be the request's batch, so
        strategies reuse its memo, e.g. the query embedding). ``strategies`` are the instances to
        read (the engine's current ones); default: those given at construction."""
        batch = QueryBatch.of(query)
        live = self._instances if strategies is None else strategies
        text = batch.texts[0]
        n, s = len(cands), len(self.strategies)
        out = np.empty((n, self._n_features), dtype=np.float32)
        if n == 0:
            return out
        items = cands.items
        ranks = cands.ranks
        found = ranks == ranks  # not NaN
        out[:, 0: 3 * s: 3] = cands.scores
        out[:, 1: 3 * s: 3] = ranks
        out[:, 2: 3 * s: 3] = found
        rr = reciprocal_ranks(ranks)
        out[:, 3 * s: 4 * s] = rr
        out[:, self._fused_col] = np.add.reduce(rr, axis=1)  # rr.sum without its Python layer
        skip: set[str] = set()
        if cands.depths and min(cands.depths) <= 0:
            # a strategy the plan left off found nothing because it did not look: its found and
            # rr are missing, not 0, so rows of small plans do not teach the trees that its
            # relevant items are "not found" (fused_rrf above sums the strategies that ran)
            off = np.flatnonzero(~cands.ran)
            out[:, 3 * off + 2] = np.nan
            out[:, 3 * s + off] = np.nan
            if self.match_when_off == "missing":
                skip = {cands.strategies[i] for i in off}
        for name, c in self._match_cols:
            if name in skip:
                out[:, c] = np.nan
                continue
            scorer = live[name]
            assert isinstance(scorer, ItemScorer), name
            out[:, c] = scorer.score_items(batch, items[None, :])[0]
        for name, c_ctr, c_imp, c_clk in self._memory_cols:
            stats = live[name]
            assert isinstance(stats, ItemStatistics), name
            imp, clk = stats.item_stats(text, items)
            # the strategy's own estimate for every pair: the click memory's prior for a pair
            # never shown, so "never shown" ranks between clicked and shown-but-ignored
            out[:, c_ctr] = stats.smoothed_ctr(imp, clk)
            out[:, c_imp] = imp
            out[:, c_clk] = clk
        t = self._tail
        # bm25_title, bm25_text, bm25_text_frac, and title_overlap, text_overlap,
        # title_trigram_overlap: matched / distinct query terms (a field without query terms has
        # no match: 0 / 1)
        self._lexical.write(items, self._lexical.query(text), out, t)
        out[:, t + 6] = self.log_pop.take(items)
        out[:, t + 7: t + 12] = _query_hints(text)
        if s:
            # n_found_by, best_rank: one reduce each (on a request's path the number of numpy
            # calls, each on cold caches after the previous request's prediction, costs more than
            # the short axis they reduce)
            out[:, t + 12] = np.add.reduce(found, axis=1)
            out[:, t + 13] = np.fmin.reduce(ranks, axis=1)
        else:
            out[:, t + 12: t + 14] = (0.0, np.nan)
        return out


def _query_hints(text: str) -> tuple[float, ...]:
    """``query_tokens``, ``query_chars``, ``query_digit_frac``, ``query_has_year``,
    ``query_single_token`` of one query."""
    toks = _WORD.findall(text.lower())
    stripped = text.strip()
    return (len(toks), len(stripped), sum(map(str.isdigit, stripped)) / max(len(stripped), 1),
            1.0 if _YEAR.search(text) else 0.0, 1.0 if len(toks) == 1 else 0.0)
