"""An example ltrr strategy plug-in: titles that share character trigrams with the query.

Typo-tolerant title matching: every title and every query becomes a set of character trigrams
(``"#st"``, ``"sta"``, ``"tar"``, ... of the lower-cased text with ``#`` marking word starts);
a title scores the cosine of the two sets. The index is one sparse ``titles x trigrams`` matrix
with unit-length rows, saved as a scipy ``.npz`` next to a JSON vocabulary (no pickle).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from ltrr.catalog import Catalog
from ltrr.contracts.strategy import CandidateGenerator
from ltrr.params import Params
from ltrr.types import QueryBatch, RetrievalResult

__version__ = "0.1.0"


class TrigramParams(Params):
    """``min_score``: titles whose cosine with the query is below it are not returned."""

    min_score: float = Field(0.2, ge=0.0, le=1.0)
    text_fields: tuple[str, ...] = Field(("title",), min_length=1)


def trigrams(text: str) -> set[str]:
    """Character trigrams of the lower-cased words, each word padded with ``#``."""
    out: set[str] = set()
    for word in text.lower().split():
        w = f"#{word}#"
        out.update(w[i:i + 3] for i in range(len(w) - 2))
    return out


class TrigramTitles(CandidateGenerator[TrigramParams]):
    """Cosine of character-trigram sets between the query and each item's text."""

    type_name = "trigram"
    format_version = 1
    Params = TrigramParams

    def _fit(self, catalog: Catalog) -> None:
        self.vocab_: dict[str, int] = {}
        self.matrix_ = self._vectors(catalog.compose(self.params.text_fields), grow=True)

    def _vectors(self, texts: list[str], grow: bool = False) -> sp.csr_matrix:
        rows, cols = [], []
        for i, text in enumerate(texts):
            for g in sorted(trigrams(text)):
                j = self.vocab_.setdefault(g, len(self.vocab_)) if grow else self.vocab_.get(g)
                if j is not None:
                    rows.append(i)
                    cols.append(j)
        m = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)),
                          shape=(len(texts), max(len(self.vocab_), 1)))
        norms = np.sqrt(np.asarray(m.sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        return sp.csr_matrix(sp.diags(1.0 / norms) @ m, dtype=np.float32)

    def _retrieve(self, queries: QueryBatch, k: int) -> RetrievalResult:
        out = RetrievalResult.empty(len(queries), k)
        scores = (self._vectors(list(queries.texts)) @ self.matrix_.T).toarray()
        for qi, row in enumerate(scores):
            keep = np.flatnonzero(row >= max(self.params.min_score, 1e-9))
            order = keep[np.lexsort((keep, -row[keep]))][:k]  # best first, ties by row
            out.ids[qi, : order.size] = order
            out.scores[qi, : order.size] = row[order]
        return out

    def _save(self, directory: Path) -> None:
        sp.save_npz(directory / "matrix.npz", self.matrix_)
        terms = sorted(self.vocab_, key=self.vocab_.__getitem__)
        (directory / "vocab.json").write_text(json.dumps(terms, ensure_ascii=False), encoding="utf-8")

    def _load(self, directory: Path, manifest: dict[str, Any]) -> None:
        self.matrix_ = sp.load_npz(directory / "matrix.npz").tocsr()
        terms = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))
        self.vocab_ = {t: i for i, t in enumerate(terms)}
