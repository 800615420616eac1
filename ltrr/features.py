"""Ranker features of a candidate union, computed batched for all candidates of a query.

Per strategy: its score, its rank and a found-by flag (score and rank are NaN when the strategy
did not find the item, so LightGBM treats them as missing rather than 0). Per item: log
popularity. Per query-item pair: the fraction of query tokens found in the title and in the
indexed text. The schema (ordered names + version) is saved with every ranker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ltrr.catalog import Catalog
from ltrr.text import Analyzer
from ltrr.types import Candidates

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class FeatureSchema:
    names: tuple[str, ...]
    version: int = SCHEMA_VERSION

    def to_dict(self) -> dict:
        return {"names": list(self.names), "version": self.version}

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSchema:
        return cls(tuple(d["names"]), int(d["version"]))

    def index(self, name: str) -> int:
        return self.names.index(name)


class FeatureBuilder:
    """Builds the ``float32[n_candidates, n_features]`` matrix for one query's union."""

    def __init__(self, catalog: Catalog, strategies: Sequence[str], text_fields: Sequence[str],
                 analyzer: Analyzer | None = None):
        self.strategies = tuple(strategies)
        self.analyzer = analyzer or Analyzer(strip_accents=True)
        self.log_pop = np.log1p(np.maximum(catalog.popularity, 0.0)).astype(np.float32)
        self.vocab: dict[str, int] = {}
        title_rows = self._binary_rows(catalog.titles)
        text_rows = self._binary_rows(catalog.compose(text_fields))
        n_terms = max(len(self.vocab), 1)
        self.title_terms = self._matrix(title_rows, len(catalog), n_terms)
        self.text_terms = self._matrix(text_rows, len(catalog), n_terms)
        names = []
        for s in self.strategies:
            names += [f"{s}_score", f"{s}_rank", f"{s}_found"]
        names += ["log_popularity", "title_overlap", "text_overlap", "query_tokens", "n_found_by"]
        self.schema = FeatureSchema(tuple(names))

    def _binary_rows(self, texts: Sequence[str]) -> tuple[list[int], list[int]]:
        indptr, indices = [0], []
        for text in texts:
            ids = {self.vocab.setdefault(t, len(self.vocab)) for t in self.analyzer(text)}
            indices.extend(sorted(ids))
            indptr.append(len(indices))
        return indptr, indices

    @staticmethod
    def _matrix(rows: tuple[list[int], list[int]], n_rows: int, n_cols: int) -> sp.csr_matrix:
        indptr, indices = rows
        data = np.ones(len(indices), dtype=np.float32)
        return sp.csr_matrix((data, np.asarray(indices, dtype=np.int64), np.asarray(indptr)),
                             shape=(n_rows, n_cols))

    def _query_vector(self, query: str) -> tuple[np.ndarray, int]:
        toks = set(self.analyzer(query))
        ids = np.array(sorted(self.vocab[t] for t in toks if t in self.vocab), dtype=np.int64)
        return ids, len(toks)

    def build(self, query: str, cands: Candidates) -> np.ndarray:
        n, s = len(cands), len(self.strategies)
        out = np.empty((n, self.schema.names.__len__()), dtype=np.float32)
        if n == 0:
            return out
        out[:, 0 : 3 * s : 3] = cands.scores
        out[:, 1 : 3 * s : 3] = cands.ranks
        found = cands.found
        out[:, 2 : 3 * s : 3] = found
        base = 3 * s
        out[:, base] = self.log_pop[cands.items]
        q_ids, n_tok = self._query_vector(query)
        if q_ids.size:
            denom = float(max(n_tok, 1))
            out[:, base + 1] = np.asarray(self.title_terms[cands.items][:, q_ids].sum(axis=1)).ravel() / denom
            out[:, base + 2] = np.asarray(self.text_terms[cands.items][:, q_ids].sum(axis=1)).ravel() / denom
        else:
            out[:, base + 1] = 0.0
            out[:, base + 2] = 0.0
        out[:, base + 3] = n_tok
        out[:, base + 4] = found.sum(axis=1)
        return out
