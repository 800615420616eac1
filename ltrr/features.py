"""Ranker features of a candidate union, computed batched for all candidates of a query.

The schema (ordered names + version + fingerprint) depends on the engine's strategies: a feature
whose source is not in the engine is not in the schema. Groups, in order:

* provenance, per strategy ``s``: ``s_score``, ``s_rank``, ``s_found`` — score and rank are NaN
  when ``s`` did not find the item, so LightGBM treats them as missing rather than 0;
* ``s_match``, per strategy declaring :class:`~ltrr.contracts.strategy.ItemScorer` (dense:
  cosine; BM25 over other fields: its score), computed for *every* candidate, also those ``s``
  did not retrieve (except the BM25 strategy reused for ``bm25_text``);
* ``s_ctr``, ``s_impressions``, ``s_clicks``, per strategy declaring
  :class:`~ltrr.contracts.strategy.ItemStatistics` (the click memory): decayed counts of the
  (query, item) pair; CTR is NaN for a pair never shown;
* ``bm25_title``, ``bm25_text``: Okapi BM25 of the query against the title and the indexed text;
* ``title_overlap``, ``text_overlap``: fraction of query tokens in the title / text;
  ``title_trigram_overlap``: fraction of the query's character trigrams in the title;
* ``log_popularity``; query hints ``query_tokens``, ``query_chars``, ``query_digit_frac``,
  ``query_has_year``, ``query_single_token``; ``n_found_by``, ``best_rank``.

Every group is a handful of numpy/scipy operations over the whole union: sparse row gathers and
sparse-matrix x vector products, no Python loop over candidates.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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

SCHEMA_VERSION = 2

_WORD = re.compile(r"\w+")
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


def _trigrams(text: str) -> list[str]:
    s = " " + _SPACES.sub(" ", fold_accents(text).lower()).strip() + " "
    return [s[i:i + 3] for i in range(len(s) - 2)] if len(s) > 3 else []


def _binary(m: sp.csr_matrix) -> sp.csr_matrix:
    return sp.csr_matrix((np.ones_like(m.data, dtype=np.float32), m.indices, m.indptr), shape=m.shape)


class _FieldIndex:
    """BM25 term scores (docs x vocab CSR) of one field, from a lexical strategy's
    :meth:`~ltrr.contracts.strategy.TermWeighted.term_weights`: a query's scores for any set of
    items are one sparse row gather and one matrix-vector product; the numbers equal the
    strategy's own ``score_items`` (tested).
    """

    def __init__(self, weights: TermWeights):
        self.analyze = weights.analyze
        self.vocab = weights.vocabulary
        self.scores = weights.weights.tocsr()
        self.present = _binary(self.scores)

    def query(self, text: str) -> tuple[np.ndarray, np.ndarray, int]:
        """Dense term-count and term-indicator vectors of the query, and its distinct tokens."""
        toks = self.analyze(text)
        counts = np.zeros(self.scores.shape[1], dtype=np.float64)
        ids = [self.vocab[t] for t in toks if t in self.vocab]
        if ids:
            np.add.at(counts, np.asarray(ids, dtype=np.int64), 1.0)
        return counts, (counts > 0).astype(np.float32), len(set(toks))


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
    """

    def __init__(self, catalog: Catalog, strategies: Sequence[str] | Mapping[str, CandidateGenerator],
                 text_fields: Sequence[str], analyzer: Analyzer | None = None):
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
        self._title = _FieldIndex(bm25_cls({"text_fields": ["title"], **analyzer_opts}).fit(catalog).term_weights())
        self._text = _FieldIndex(text_weights)
        tri_vocab: dict[str, int] = {}
        indptr, indices = [0], []
        for title in catalog.titles:
            ids = {tri_vocab.setdefault(g, len(tri_vocab)) for g in _trigrams(title)}
            indices.extend(sorted(ids))
            indptr.append(len(indices))
        self._tri_vocab = tri_vocab
        self._title_tri = sp.csr_matrix(
            (np.ones(len(indices), dtype=np.float32), np.asarray(indices, dtype=np.int64), np.asarray(indptr)),
            shape=(len(catalog), max(len(tri_vocab), 1)))
        self._match = [n for n, s in instances.items() if isinstance(s, ItemScorer) and n != reused]
        self._memory = [n for n, s in instances.items() if isinstance(s, ItemStatistics)]
        names: list[str] = []
        for s in self.strategies:
            names += [f"{s}_score", f"{s}_rank", f"{s}_found"]
        names += [f"{n}_match" for n in self._match]
        for n in self._memory:
            names += [f"{n}_ctr", f"{n}_impressions", f"{n}_clicks"]
        names += ["bm25_title", "bm25_text", "title_overlap", "text_overlap", "title_trigram_overlap",
                  "log_popularity", "query_tokens", "query_chars", "query_digit_frac", "query_has_year",
                  "query_single_token", "n_found_by", "best_rank"]
        self.schema = FeatureSchema(tuple(names))
        self._col = {n: i for i, n in enumerate(names)}

    def build(self, query: str | QueryBatch, cands: Candidates,
              strategies: Mapping[str, CandidateGenerator] | None = None) -> np.ndarray:
        """Features of every candidate of one query (``query`` may be the request's batch, so
        strategies reuse its memo, e.g. the query embedding). ``strategies`` are the instances to
        read (the engine's current ones); default: those given at construction."""
        batch = QueryBatch.of(query)
        live = self._instances if strategies is None else strategies
        text = batch.texts[0]
        n, s = len(cands), len(self.strategies)
        out = np.empty((n, len(self.schema.names)), dtype=np.float32)
        if n == 0:
            return out
        col = self._col
        items = cands.items
        out[:, 0: 3 * s: 3] = cands.scores
        out[:, 1: 3 * s: 3] = cands.ranks
        found = cands.found
        out[:, 2: 3 * s: 3] = found
        for name in self._match:
            scorer = live[name]
            assert isinstance(scorer, ItemScorer), name
            out[:, col[f"{name}_match"]] = scorer.score_items(batch, items[None, :])[0]
        for name in self._memory:
            stats = live[name]
            assert isinstance(stats, ItemStatistics), name
            imp, clk = stats.item_stats(text, items)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[:, col[f"{name}_ctr"]] = np.where(imp > 0, clk / imp, np.nan)
            out[:, col[f"{name}_impressions"]] = imp
            out[:, col[f"{name}_clicks"]] = clk
        for field, idx in (("title", self._title), ("text", self._text)):
            counts, present, n_tok = idx.query(text)
            rows = idx.scores[items]
            out[:, col[f"bm25_{field}"]] = rows @ counts
            hit = _binary(rows) @ present
            out[:, col[f"{field}_overlap"]] = hit / n_tok if n_tok else 0.0
        grams = set(_trigrams(text)) if text.strip() else set()
        n_grams = len(grams)
        known = np.array(sorted(j for j in map(self._tri_vocab.get, grams) if j is not None), dtype=np.int64)
        if known.size:
            vec = np.zeros(self._title_tri.shape[1], dtype=np.float32)
            vec[known] = 1.0
            out[:, col["title_trigram_overlap"]] = (self._title_tri[items] @ vec) / n_grams
        else:
            out[:, col["title_trigram_overlap"]] = 0.0
        out[:, col["log_popularity"]] = self.log_pop[items]
        toks = _WORD.findall(text.lower())
        stripped = text.strip()
        out[:, col["query_tokens"]] = len(toks)
        out[:, col["query_chars"]] = len(stripped)
        out[:, col["query_digit_frac"]] = sum(c.isdigit() for c in stripped) / max(len(stripped), 1)
        out[:, col["query_has_year"]] = 1.0 if _YEAR.search(text) else 0.0
        out[:, col["query_single_token"]] = 1.0 if len(toks) == 1 else 0.0
        out[:, col["n_found_by"]] = found.sum(axis=1)
        out[:, col["best_rank"]] = np.fmin.reduce(cands.ranks, axis=1) if s else np.nan
        return out
