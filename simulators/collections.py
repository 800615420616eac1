"""Test collections with human relevance judgments (Cranfield, CISI) as query streams.

A collection is a corpus (read as an ltrr :class:`~ltrr.catalog.Catalog`), its queries and its
TREC qrels mapped to catalog rows. :meth:`IRCollection.stream` samples the judged queries
uniformly with replacement — the standard protocol of online learning-to-rank research, where a
click model over the judged grades then stands in for users. Unlike the movie queries of
:mod:`simulators.movies`, these grades are human judgments.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ltrr.catalog import Catalog
from ltrr.io import read_qrels, read_queries
from simulators.movies import SimQuery

_EXAMPLES = 5  # unknown ids quoted in a warning


@dataclass(frozen=True)
class IRCollection:
    """A corpus, its queries and graded judgments ``{qid: {catalog row: grade}}``.

    ``qrels`` keeps every judged pair, including grade 0 (judged non-relevant); only grades
    >= 1 count as relevant in :meth:`judged` and :meth:`stream`.
    """

    catalog: Catalog
    queries: tuple[tuple[str, str], ...]
    qrels: Mapping[str, Mapping[int, int]]

    @classmethod
    def load(cls, catalog_path: str | os.PathLike, queries_path: str | os.PathLike,
             qrels_path: str | os.PathLike) -> IRCollection:
        """Read corpus JSONL, queries JSONL ``{"qid","query"}`` and TREC qrels.

        Bad lines raise DataError naming file and line. Judgments of documents missing from the
        corpus, or of queries missing from the queries file, are skipped with a warning that
        gives their count and first examples.
        """
        queries = read_queries(queries_path)  # the small files first: their errors come at once
        raw = read_qrels(qrels_path)
        catalog = Catalog.from_jsonl(catalog_path)
        known_q = {qid for qid, _ in queries}
        qrels: dict[str, dict[int, int]] = {}
        missing_docs: list[str] = []
        missing_queries: list[str] = []
        for qid, judged in raw.items():
            if qid not in known_q:
                missing_queries.append(qid)
                continue
            rows: dict[int, int] = {}
            for docid, grade in judged.items():
                row = catalog.index.get(docid)
                if row is None:
                    missing_docs.append(docid)
                else:
                    rows[row] = grade
            qrels[qid] = rows
        if missing_docs:
            warnings.warn(
                f"{qrels_path}: skipped {len(missing_docs)} judgment(s) of documents not in "
                f"{catalog_path}, e.g. {missing_docs[:_EXAMPLES]}", stacklevel=2)
        if missing_queries:
            warnings.warn(
                f"{qrels_path}: skipped the judgments of {len(missing_queries)} query id(s) not "
                f"in {queries_path}, e.g. {missing_queries[:_EXAMPLES]}", stacklevel=2)
        return cls(catalog, tuple(queries), qrels)

    @classmethod
    def load_dir(cls, directory: str | os.PathLike, qrels_name: str = "qrels.txt") -> IRCollection:
        """Load ``corpus.jsonl``, ``queries.jsonl`` and ``qrels_name`` from one directory."""
        d = Path(directory)
        return cls.load(d / "corpus.jsonl", d / "queries.jsonl", d / qrels_name)

    def judged(self) -> list[SimQuery]:
        """The queries with at least one relevant (grade >= 1) document, in file order."""
        out = []
        for qid, text in self.queries:
            rel = {int(r): int(g) for r, g in sorted(self.qrels.get(qid, {}).items()) if g >= 1}
            if rel:
                out.append(SimQuery(qid, text, "judged", rel))
        return out

    def stream(self, n: int, seed: int) -> list[SimQuery]:
        """``n`` judged queries drawn uniformly with replacement; the same seed, the same list."""
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be an int >= 1. Got {n!r} instead.")
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed must be a non-negative int. Got {seed!r} instead.")
        pool = self.judged()
        if not pool:
            raise ValueError("The collection has no query with a relevant (grade >= 1) document.")
        rng = np.random.default_rng(np.random.SeedSequence(int(seed)))
        return [pool[i] for i in rng.integers(len(pool), size=n)]
