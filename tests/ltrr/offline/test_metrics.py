"""Metrics: parity with ir_measures on Cranfield, hand-computed cases, edge cases, array versions."""

from __future__ import annotations

import math
from pathlib import Path

import ir_measures
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from ir_measures import AP, RR, R, nDCG
from ir_measures import P as Prec

from ltrr.io import read_jsonl, read_qrels, read_queries
from ltrr.offline.metrics import (
    dcg,
    evaluate,
    evaluate_per_query,
    gains_of,
    ndcg_from_grades,
    parse_measure,
    rank_documents,
    recall_of_set,
)

DATA = Path(__file__).resolve().parents[3] / "data" / "cranfield"


def _tokens(text: str) -> set[str]:
    return set("".join(c if c.isalnum() else " " for c in text.lower()).split())


@pytest.fixture(scope="module")
def overlap_run() -> dict[str, dict[str, float]]:
    """A deterministic run: score = number of distinct query tokens in the document (many ties)."""
    docs = [(str(obj["id"]), _tokens(obj["title"] + " " + obj["text"])) for _, obj in read_jsonl(DATA / "corpus.jsonl")]
    run = {}
    for qid, query in read_queries(DATA / "queries.jsonl"):
        q = _tokens(query)
        scores = {docid: float(len(q & toks)) for docid, toks in docs}
        run[qid] = {d: s for d, s in scores.items() if s > 0}
    return run


def _with_tiebreak(run):
    """Same ranking families without ties: add a docid-dependent amount smaller than 1."""
    return {q: {d: s + int(d) * 1e-5 for d, s in docs.items()} for q, docs in run.items()}


def _reference(measures, qrels, run, provider=None):
    ev = provider or ir_measures
    return ev.calc_aggregate(measures, qrels, run)


def test_parity_with_ir_measures_on_cranfield_tie_free_run(overlap_run):
    qrels = read_qrels(DATA / "qrels.txt")
    run = _with_tiebreak(overlap_run)
    ours = evaluate(run, qrels, ("nDCG@10", "R@100", "RR@10", "AP", "P@10"))
    ref = _reference([nDCG @ 10, R @ 100, RR @ 10, AP, Prec @ 10], qrels, run)
    assert len(qrels) == 225 and all(any(g >= 1 for g in j.values()) for j in qrels.values())
    assert ours["nDCG@10"] == pytest.approx(ref[nDCG @ 10], abs=1e-9)
    assert ours["R@100"] == pytest.approx(ref[R @ 100], abs=1e-9)
    assert ours["RR@10"] == pytest.approx(ref[RR @ 10], abs=1e-9)
    assert ours["AP"] == pytest.approx(ref[AP], abs=1e-9)
    assert ours["P@10"] == pytest.approx(ref[Prec @ 10], abs=1e-9)
    assert 0.05 < ours["nDCG@10"] < 0.6  # a sane, non-degenerate run


def test_parity_with_trec_eval_ties_on_cranfield(overlap_run):
    """With ties, trec_eval (ir_measures' pytrec_eval provider) orders tied docids descending."""
    qrels = read_qrels(DATA / "qrels.txt")
    n_tied = sum(len(d) - len(set(d.values())) for d in overlap_run.values())
    assert n_tied > 10_000  # the overlap scorer really produces ties
    ours = evaluate(overlap_run, qrels, ("nDCG@10", "R@100", "AP", "P@10", "RR"))
    ref = _reference([nDCG @ 10, R @ 100, AP, Prec @ 10, RR], qrels, overlap_run, ir_measures.pytrec_eval)
    for name, m in (("nDCG@10", nDCG @ 10), ("R@100", R @ 100), ("AP", AP), ("P@10", Prec @ 10), ("RR", RR)):
        assert ours[name] == pytest.approx(ref[m], abs=1e-9), name
    # RR@10 with ties: ir_measures uses another provider with another tie order, so compare on
    # the run re-scored by our (trec_eval) ranking, which has no ties.
    ranked = {q: {d: -float(i) for i, d in enumerate(rank_documents(s))} for q, s in overlap_run.items()}
    ref_rr = _reference([RR @ 10], qrels, ranked)[RR @ 10]
    assert evaluate(overlap_run, qrels, ("RR@10",))["RR@10"] == pytest.approx(ref_rr, abs=1e-9)


def test_parity_exponential_gain_on_graded_cranfield(overlap_run):
    qrels = read_qrels(DATA / "qrels_graded.txt")
    run = _with_tiebreak(overlap_run)
    exp_gain = nDCG(gains={g: 2**g - 1 for g in range(5)}) @ 10
    ref = _reference([exp_gain, AP, R @ 100], qrels, run)
    ours = evaluate(run, qrels, ("nDCG@10", "AP", "R@100"))
    assert ours["nDCG@10"] == pytest.approx(ref[exp_gain], abs=1e-9)
    assert ours["AP"] == pytest.approx(ref[AP], abs=1e-9)
    assert ours["R@100"] == pytest.approx(ref[R @ 100], abs=1e-9)


def test_hand_computed_values():
    qrels = {"q": {"a": 2, "b": 0, "c": 1, "z": 1}}  # 3 relevant: a, c, z (z never retrieved)
    run = {"q": {"a": 3.0, "b": 2.0, "c": 1.0}}  # ranking a, b, c
    vals = evaluate(run, qrels, ("nDCG@3", "R@2", "RR@10", "AP", "P@2"))
    dcg_ = 3.0 / math.log2(2) + 1.0 / math.log2(4)
    idcg = 3.0 / math.log2(2) + 1.0 / math.log2(3) + 1.0 / math.log2(4)
    assert vals["nDCG@3"] == pytest.approx(dcg_ / idcg, abs=1e-12)
    assert vals["R@2"] == pytest.approx(1 / 3, abs=1e-12)
    assert vals["RR@10"] == 1.0
    assert vals["AP"] == pytest.approx((1 / 1 + 2 / 3) / 3, abs=1e-12)
    assert vals["P@2"] == 0.5


def test_first_relevant_below_cutoff_gives_zero_rr():
    qrels = {"q": {"c": 1}}
    run = {"q": {"a": 3.0, "b": 2.0, "c": 1.0}}
    assert evaluate(run, qrels, ("RR@2", "RR@3")) == {"RR@2": 0.0, "RR@3": pytest.approx(1 / 3)}


def test_ties_broken_by_docid_descending():
    assert rank_documents({"a": 1.0, "c": 1.0, "b": 1.0, "x": 2.0}) == ["x", "c", "b", "a"]
    qrels = {"q": {"a": 1}}
    assert evaluate({"q": {"a": 1.0, "b": 1.0}}, qrels, ("RR@10",))["RR@10"] == 0.5


def test_empty_run_scores_zero():
    qrels = {"1": {"a": 1}, "2": {"b": 3}}
    assert evaluate({}, qrels) == {"nDCG@10": 0.0, "R@100": 0.0, "RR@10": 0.0, "AP": 0.0}


def test_query_without_relevant_docs_excluded_and_missing_query_counts_zero():
    qrels = {"1": {"a": 1}, "2": {"b": 0, "c": 0}, "3": {"d": 1}}
    run = {"1": {"a": 1.0}, "2": {"b": 1.0}, "99": {"x": 1.0}}  # 3 missing, 99 unjudged
    per_q = evaluate_per_query(run, qrels, ("AP",))
    assert per_q == {"AP": {"1": 1.0, "3": 0.0}}
    assert evaluate(run, qrels, ("AP",)) == {"AP": 0.5}


def test_no_relevant_anywhere_is_an_error():
    with pytest.raises(ValueError, match=r"no query with a relevant document .* among 1 queries"):
        evaluate({"q": {"a": 1.0}}, {"q": {"a": 0}})


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("NDCG@10", r"Unknown measure 'NDCG@10'; expected one of nDCG, R, RR, AP, P"),
        ("AP@10", r"Measure 'AP@10': AP is computed over the full run and takes no cutoff"),
        ("R", r"Measure 'R' needs a cutoff, e.g. 'R@10'"),
        ("P@0", r"The cutoff of measure 'P@0' must be >= 1. Got 0 instead."),
    ],
)
def test_bad_measure_names(name, match):
    with pytest.raises(ValueError, match=match):
        parse_measure(name)


# ----------------------------------------------------------------------------- array versions


def test_dcg_and_gains_by_hand():
    gains = gains_of(np.array([[2.0, 0.0, 1.0], [1.0, np.nan, np.nan]]))
    np.testing.assert_array_equal(gains, [[3.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(dcg(gains), [3.0 + 1.0 / 2.0, 1.0], atol=1e-12)


def test_ndcg_from_grades_matches_evaluate():
    rng = np.random.default_rng(0)
    n_q, n_docs, k = 40, 30, 10
    grades = rng.integers(0, 5, size=(n_q, n_docs)).astype(float)
    grades[grades < 3] = 0  # sparse relevance, some rows possibly all zero
    grades[0] = 0.0  # a query without relevant documents
    scores = rng.random((n_q, n_docs))
    order = np.argsort(-scores, axis=1)
    page = np.take_along_axis(grades, order, axis=1)[:, :k]
    got = ndcg_from_grades(page, grades, k)
    qrels = {str(q): {str(d): int(grades[q, d]) for d in range(n_docs)} for q in range(n_q)}
    run = {str(q): {str(d): float(scores[q, d]) for d in range(n_docs)} for q in range(n_q)}
    ref = evaluate_per_query(run, qrels, ("nDCG@10",))["nDCG@10"]
    assert np.isnan(got[0])
    for q in range(1, n_q):
        assert got[q] == pytest.approx(ref[str(q)], abs=1e-12)


def test_ndcg_from_grades_short_pages_padded_with_nan():
    page = np.array([[1.0, np.nan, np.nan], [np.nan, np.nan, np.nan]])
    judged = np.array([[1.0, 1.0, np.nan], [2.0, np.nan, np.nan]])
    got = ndcg_from_grades(page, judged, 3)
    np.testing.assert_allclose(got, [1.0 / (1.0 + 1.0 / math.log2(3)), 0.0], atol=1e-12)


def test_ndcg_from_grades_shape_error():
    with pytest.raises(ValueError, match=r"got page_grades \(2, 3\) and judged_grades \(3, 3\)"):
        ndcg_from_grades(np.zeros((2, 3)), np.zeros((3, 3)))


def test_recall_of_set():
    found = np.array([[1, 1, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0]], dtype=bool)
    rel = np.array([[1, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]], dtype=bool)
    got = recall_of_set(found, rel)
    np.testing.assert_array_equal(got[:2], [0.5, 1.0])
    assert np.isnan(got[2])
    with pytest.raises(ValueError, match=r"same 2-D shape; got \(3, 4\) and \(3, 3\)"):
        recall_of_set(found, rel[:, :3])


def test_ndcg_from_grades_lengths_equal_nan_padding():
    page = np.array([[3.0, 1.0, 2.0], [1.0, 4.0, 4.0]])
    judged = np.array([[3.0, 2.0, 1.0], [4.0, 1.0, np.nan]])
    padded = np.array([[3.0, 1.0, np.nan], [1.0, np.nan, np.nan]])
    np.testing.assert_array_equal(ndcg_from_grades(page, judged, lengths=np.array([2, 1])),
                                  ndcg_from_grades(padded, judged))
    with pytest.raises(ValueError, match=r"lengths must have one entry per query, shape \(2,\); got \(3,\)"):
        ndcg_from_grades(page, judged, lengths=np.array([1, 2, 3]))


_docids = st.sampled_from([str(i) for i in range(12)])


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    qrels=st.dictionaries(st.sampled_from("abc"), st.dictionaries(_docids, st.integers(-1, 4), min_size=1, max_size=8),
                          min_size=1, max_size=3),
    run=st.dictionaries(st.sampled_from("abcd"), st.dictionaries(_docids, st.integers(0, 3).map(float), max_size=12),
                        max_size=4),
)
def test_property_parity_with_trec_eval_with_ties(qrels, run):
    """Random small runs with many ties and graded (also negative) qrels agree with trec_eval."""
    assume(any(any(g >= 1 for g in judged.values()) for judged in qrels.values()))
    # trec_eval averages over every qrels query; keep the ones with a relevant document, as we do
    qrels = {q: j for q, j in qrels.items() if any(g >= 1 for g in j.values())}
    names = ("nDCG@5", "R@3", "AP", "P@2", "RR")
    ref_measures = [nDCG(gains={g: 2**g - 1 for g in range(5)}) @ 5, R @ 3, AP, Prec @ 2, RR]
    ours = evaluate(run, qrels, names)
    # one call per measure: ir_measures mislabels two nDCG variants evaluated in one call
    ref = {m: _reference([m], qrels, run, ir_measures.pytrec_eval)[m] for m in ref_measures}
    for name, m in zip(names, ref_measures, strict=True):
        assert ours[name] == pytest.approx(ref[m], abs=1e-9), name


def test_mean_ndcg_of_groups_hand_computed():
    from ltrr.offline.metrics import mean_ndcg_of_groups

    # query 1: perfect order (nDCG 1); query 2: the only relevant row ranked second
    scores = np.array([3.0, 2.0, 1.0, 0.9, 0.8])
    grades = np.array([2, 1, 0, 0, 1])
    got = mean_ndcg_of_groups(scores, grades, np.array([3, 2]), k=10)
    assert got == pytest.approx((1.0 + 1.0 / np.log2(3)) / 2)
    # a query with no positive grade is left out
    assert mean_ndcg_of_groups(scores, np.array([2, 1, 0, 0, 0]), np.array([3, 2])) == pytest.approx(1.0)
