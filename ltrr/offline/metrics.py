"""Ranking metrics: TREC-style evaluation of runs against qrels, and batched array versions.

Two layers:

* :func:`evaluate` / :func:`evaluate_per_query` score a run ``{qid: {docid: score}}`` against
  qrels ``{qid: {docid: grade}}`` (see :func:`ltrr.io.read_run` and :func:`ltrr.io.read_qrels`)
  and agree with ``ir_measures`` (pytrec_eval, i.e. trec_eval) to floating-point precision.
* :func:`dcg`, :func:`ndcg_from_grades` and :func:`recall_of_set` work on padded 2-D arrays,
  one row per query, for the simulator's hot loop.

Conventions (trec_eval's, so numbers are comparable with published ones):

* A run is ranked by score descending; ties are broken by docid descending as a string, which is
  what trec_eval does and so what ir_measures' default (pytrec_eval) provider reports for nDCG,
  R, P and AP. (ir_measures computes ``RR@k`` with its msmarco provider, which breaks ties the
  other way; without ties the two agree.)
* A document is relevant when its grade is >= 1; unjudged documents have grade 0.
* nDCG uses gain ``2**grade - 1`` (negative grades count as 0) and discount ``1/log2(rank + 1)``;
  the ideal ranking sorts *all* judged grades of the query, not only the retrieved ones.
  trec_eval's own default gain is linear (``grade``); both agree on binary qrels.
* Averages run over the queries of the qrels that have at least one relevant document; such a
  query missing from the run scores 0. Run queries absent from the qrels are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DEFAULT_MEASURES",
    "Measure",
    "parse_measure",
    "rank_documents",
    "evaluate",
    "evaluate_per_query",
    "gains_of",
    "dcg",
    "ndcg_from_grades",
    "recall_of_set",
]

DEFAULT_MEASURES = ("nDCG@10", "R@100", "RR@10", "AP")

_KINDS = ("nDCG", "R", "RR", "AP", "P")
_MEASURE_RE = re.compile(r"^(nDCG|R|RR|AP|P)(?:@(\d+))?$")


@dataclass(frozen=True)
class Measure:
    """A parsed measure name: ``kind`` in nDCG/R/RR/AP/P and an optional rank cutoff ``k``."""

    kind: str
    k: int | None

    def __str__(self) -> str:
        return self.kind if self.k is None else f"{self.kind}@{self.k}"


def parse_measure(name: str) -> Measure:
    """Parse ``"nDCG@10"``, ``"R@100"``, ``"RR@10"``, ``"RR"``, ``"AP"``, ``"P@5"``...

    ``AP`` takes no cutoff (it is computed over the whole run); ``R`` and ``P`` need one.
    """
    m = _MEASURE_RE.match(name) if isinstance(name, str) else None
    if m is None:
        raise ValueError(
            f"Unknown measure {name!r}; expected one of {', '.join(_KINDS)} with an optional "
            "'@k' cutoff, e.g. 'nDCG@10', 'R@100', 'RR@10', 'AP', 'P@10'"
        )
    kind, k = m.group(1), (int(m.group(2)) if m.group(2) else None)
    if k is not None and k < 1:
        raise ValueError(f"The cutoff of measure {name!r} must be >= 1. Got {k} instead.")
    if kind == "AP" and k is not None:
        raise ValueError(f"Measure {name!r}: AP is computed over the full run and takes no cutoff")
    if kind in ("R", "P") and k is None:
        raise ValueError(f"Measure {name!r} needs a cutoff, e.g. '{kind}@10'")
    return Measure(kind, k)


def rank_documents(scores: Mapping[str, float]) -> list[str]:
    """Docids by score descending, ties by docid descending (trec_eval's order)."""
    return sorted(scores, key=lambda d: (scores[d], d), reverse=True)


def _query_values(ranked_grades: np.ndarray, judged_grades: np.ndarray,
                  measures: list[Measure]) -> list[float]:
    """Every measure for one query; ``ranked_grades`` follow the run's order."""
    rel = ranked_grades >= 1
    n_rel = int(np.count_nonzero(judged_grades >= 1))
    out: list[float] = []
    for m in measures:
        top = rel if m.k is None else rel[: m.k]
        if m.kind == "R":
            out.append(np.count_nonzero(top) / n_rel)
        elif m.kind == "P":
            if m.k is None:  # parse_measure never builds one
                raise ValueError(f"Measure {m}: P needs a cutoff, e.g. 'P@10'")
            out.append(np.count_nonzero(top) / m.k)
        elif m.kind == "RR":
            hits = np.flatnonzero(top)
            out.append(1.0 / (hits[0] + 1) if hits.size else 0.0)
        elif m.kind == "AP":
            hits = np.flatnonzero(rel)
            # precision at each relevant position = (#relevant so far) / rank
            out.append(float(np.sum(np.arange(1, hits.size + 1) / (hits + 1))) / n_rel)
        else:  # nDCG
            page = ranked_grades if m.k is None else ranked_grades[: m.k]
            ideal = np.sort(judged_grades)[::-1]
            ideal = ideal if m.k is None else ideal[: m.k]
            out.append(float(dcg(gains_of(page)[None, :])[0] / dcg(gains_of(ideal)[None, :])[0]))
    return [float(v) for v in out]


def evaluate_per_query(run: Mapping[str, Mapping[str, float]],
                       qrels: Mapping[str, Mapping[str, int]],
                       measures: Iterable[str] = DEFAULT_MEASURES) -> dict[str, dict[str, float]]:
    """Per-query values ``{measure: {qid: value}}`` over the qrels queries with a relevant doc.

    A qrels query absent from the run gets 0 for every measure; queries whose judgments are all
    non-relevant (grade < 1) are left out, as are run queries without judgments.
    """
    names = list(measures)
    parsed = [parse_measure(n) for n in names]
    out: dict[str, dict[str, float]] = {n: {} for n in names}
    for qid, judged in qrels.items():
        judged_grades = np.fromiter(judged.values(), dtype=np.float64, count=len(judged))
        if not np.any(judged_grades >= 1):
            continue
        scores = run.get(qid)
        if not scores:
            values = [0.0] * len(parsed)
        else:
            ranked = rank_documents(scores)
            grades = np.fromiter((judged.get(d, 0) for d in ranked), dtype=np.float64, count=len(ranked))
            values = _query_values(grades, judged_grades, parsed)
        for n, v in zip(names, values, strict=True):
            out[n][qid] = v
    return out


def evaluate(run: Mapping[str, Mapping[str, float]],
             qrels: Mapping[str, Mapping[str, int]],
             measures: Iterable[str] = DEFAULT_MEASURES) -> dict[str, float]:
    """Mean of each measure over the qrels queries that have a relevant document.

    Parameters
    ----------
    run
        ``{qid: {docid: score}}``; higher scores rank first.
    qrels
        ``{qid: {docid: grade}}``; grade >= 1 is relevant.
    measures
        Measure names, see :func:`parse_measure`.

    Returns
    -------
    ``{measure name: mean value}``. Raises ValueError if no qrels query has a relevant document.
    """
    per_query = evaluate_per_query(run, qrels, measures)
    n_queries = len(next(iter(per_query.values()))) if per_query else 0
    if per_query and n_queries == 0:
        raise ValueError(
            f"The qrels hold no query with a relevant document (grade >= 1) among {len(qrels)} "
            "queries; there is nothing to average over"
        )
    return {name: float(np.mean(list(vals.values()))) for name, vals in per_query.items()}


# ----------------------------------------------------------------------------- array versions


def gains_of(grades: np.ndarray) -> np.ndarray:
    """Exponential gains ``2**grade - 1``; NaN (padding) and negative grades give 0."""
    g = np.asarray(grades, dtype=np.float64)
    g = np.where(np.isnan(g), 0.0, np.maximum(g, 0.0))
    return np.exp2(g) - 1.0


def dcg(gains: np.ndarray) -> np.ndarray:
    """Discounted cumulative gain of each row of ``gains[n_q, k]`` (rank r discounted by log2(r+1)).

    NaN entries (padding of short pages) contribute nothing.
    """
    g = np.asarray(gains, dtype=np.float64)
    if g.ndim != 2:
        raise ValueError(f"dcg expects a 2-D array [n_queries, k]; got shape {g.shape}")
    discount = 1.0 / np.log2(np.arange(2, g.shape[1] + 2, dtype=np.float64))
    return np.nansum(g * discount, axis=1)


def ndcg_from_grades(page_grades: np.ndarray, judged_grades: np.ndarray,
                     k: int | None = None, lengths: np.ndarray | None = None) -> np.ndarray:
    """nDCG@k of each page from the grades shown and all judged grades of its query.

    Parameters
    ----------
    page_grades
        ``float[n_q, n]`` grades of the documents on each page in display order; NaN pads short
        pages (and an unjudged document has grade 0).
    judged_grades
        ``float[n_q, m]`` every judged grade of each query, in any order, NaN padded; the ideal
        page sorts these.
    k
        Cutoff; defaults to the page width ``n``.
    lengths
        Optional ``int[n_q]`` number of documents on each page; positions past it are padding
        whatever they hold (an alternative to NaN padding).

    Returns
    -------
    ``float[n_q]``; NaN for a query without any positive grade (nDCG is undefined there, and
    :func:`evaluate` leaves such queries out — average with ``np.nanmean``).
    """
    page = np.asarray(page_grades, dtype=np.float64)
    judged = np.asarray(judged_grades, dtype=np.float64)
    if page.ndim != 2 or judged.ndim != 2 or page.shape[0] != judged.shape[0]:
        raise ValueError(
            "ndcg_from_grades expects 2-D arrays with one row per query; got page_grades "
            f"{page.shape} and judged_grades {judged.shape}"
        )
    k = page.shape[1] if k is None else int(k)
    if k < 1:
        raise ValueError(f"The cutoff k must be >= 1. Got {k} instead.")
    if lengths is not None:
        n = np.asarray(lengths)
        if n.shape != (page.shape[0],):
            raise ValueError(f"lengths must have one entry per query, shape ({page.shape[0]},); got {n.shape}")
        page = np.where(np.arange(page.shape[1])[None, :] < n[:, None], page, np.nan)
    # sort descending with NaN last: negate, sort ascending (NaN sorts last), negate back
    ideal = -np.sort(-judged, axis=1)[:, :k]
    ideal_dcg = dcg(gains_of(ideal))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ideal_dcg > 0, dcg(gains_of(page[:, :k])) / ideal_dcg, np.nan)


def recall_of_set(found_mask: np.ndarray, relevant_mask: np.ndarray) -> np.ndarray:
    """Fraction of each query's relevant items that were found: ``|found & rel| / |rel|``.

    ``found_mask`` and ``relevant_mask`` are ``bool[n_q, n_items]``; a query without relevant
    items gets NaN (undefined; average with ``np.nanmean``).
    """
    found = np.asarray(found_mask, dtype=bool)
    rel = np.asarray(relevant_mask, dtype=bool)
    if found.shape != rel.shape or found.ndim != 2:
        raise ValueError(
            f"recall_of_set expects two bool arrays of the same 2-D shape; got {found.shape} and {rel.shape}"
        )
    n_rel = rel.sum(axis=1)
    hits = np.logical_and(found, rel).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_rel > 0, hits / np.maximum(n_rel, 1), np.nan)


def mean_ndcg_of_groups(scores: np.ndarray, grades: np.ndarray, groups: np.ndarray, k: int = 10) -> float:
    """Mean nDCG@k of LETOR-style data: rows grouped by query (``groups`` = rows per query),
    each query's rows ordered by ``scores`` (stable), judged by ``grades``. Queries without a
    positive grade are left out, as in :func:`evaluate`."""
    scores, grades = np.asarray(scores), np.asarray(grades, dtype=np.float64)
    starts = np.r_[0, np.cumsum(groups)[:-1]]
    vals = []
    for s, g in zip(starts, groups, strict=True):
        order = np.argsort(-scores[s:s + g], kind="stable")[:k]
        page = np.full((1, k), np.nan)
        page[0, : order.size] = grades[s:s + g][order]
        vals.append(ndcg_from_grades(page, grades[s:s + g][None, :], k)[0])
    return float(np.nanmean(vals))
