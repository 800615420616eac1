"""BM25: parity with rank_bm25 on Cranfield, the Cranfield reference metrics, edge cases,
parameter errors, persistence, incremental adds, the popularity prior and properties."""

from __future__ import annotations

import json
import re
from pathlib import Path

import ir_measures
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ir_measures import AP, R, nDCG
from rank_bm25 import BM25Okapi

from ltrr import registry
from ltrr.catalog import Catalog
from ltrr.errors import ConfigError, DataError, NotFittedError, PersistenceError
from ltrr.io import read_qrels, read_queries
from ltrr.types import PAD_ID
from strategies.bm25 import BM25

ROOT = Path(__file__).resolve().parents[2]
CRAN = ROOT / "data" / "cranfield"


def tokenize(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def reference_ranking(scores: np.ndarray) -> np.ndarray:
    """Rows with a non-zero reference score: higher score first, lower row on ties."""
    nz = np.flatnonzero(scores != 0)
    return nz[np.lexsort((nz, -scores[nz]))]


def tiny(texts: list[str], popularity: list[float] | None = None) -> Catalog:
    pop = popularity or [0.0] * len(texts)
    return Catalog.from_records([
        {"id": f"d{i}", "title": "", "text": t, "popularity": p}
        for i, (t, p) in enumerate(zip(texts, pop, strict=True))
    ])


@pytest.fixture(scope="module")
def cranfield() -> Catalog:
    return Catalog.from_jsonl(CRAN / "corpus.jsonl")


@pytest.fixture(scope="module")
def queries() -> list[tuple[str, str]]:
    return read_queries(CRAN / "queries.jsonl")


@pytest.fixture(scope="module")
def fitted(cranfield: Catalog) -> BM25:
    return BM25().fit(cranfield)


@pytest.fixture(scope="module")
def reference(cranfield: Catalog) -> BM25Okapi:
    docs = [tokenize(t + " " + x) for t, x in zip(cranfield.titles, cranfield.texts, strict=True)]
    return BM25Okapi(docs, k1=1.5, b=0.75, epsilon=0.25)


# ---------------------------------------------------------------------------- parity
def test_registry_finds_bm25() -> None:
    assert registry.get("strategy", "bm25") is BM25


def test_cranfield_parity_with_rank_bm25(fitted, reference, queries, cranfield) -> None:
    texts = [q for _, q in queries]
    assert len(texts) == 225
    n = len(cranfield)
    result = fitted.retrieve(texts, n)
    all_rows = np.tile(np.arange(n), (len(texts), 1))
    pair_scores = fitted.score_items(texts, all_rows)
    for i, q in enumerate(texts):
        ref = reference.get_scores(tokenize(q))
        expected = reference_ranking(ref)
        ids, scores = result.row(i)
        # every matching document is returned, and nothing else
        assert ids.size == expected.size
        np.testing.assert_array_equal(ids[:10], expected[:10], err_msg=f"query {i + 1}")
        np.testing.assert_allclose(scores, ref[ids], rtol=1e-6, atol=0)
        # per-posting scores are stored as float32: ~3e-8 relative to rank_bm25's float64
        np.testing.assert_allclose(pair_scores[i], ref, rtol=1e-6, atol=1e-9)


def test_repeated_query_token_counts_each_time(fitted, reference) -> None:
    query = "wing wing slipstream wing"
    ref = reference.get_scores(tokenize(query))
    ids, scores = fitted.retrieve([query], 5).row(0)
    np.testing.assert_array_equal(ids, reference_ranking(ref)[:5])
    np.testing.assert_allclose(scores, ref[ids], rtol=1e-6)
    single = fitted.retrieve(["wing slipstream"], 5).scores[0]
    assert not np.allclose(scores, single)


def _ndcg_recall_ap(run_ids: list[list[str]], qids: list[str], qrels, depth_ndcg=10, depth_r=100):
    """Our own metric check: gain 2^grade - 1; judged grade-0 documents are not relevant."""
    ndcg, recall, ap = [], [], []
    for qid, ranked in zip(qids, run_ids, strict=True):
        judged = qrels.get(qid, {})
        if not judged:
            continue
        grades = np.array([judged.get(d, 0) for d in ranked], dtype=np.float64)
        n_rel = sum(g > 0 for g in judged.values())
        disc = 1.0 / np.log2(np.arange(2, depth_ndcg + 2))
        dcg = float(((2.0 ** grades[:depth_ndcg] - 1) * disc[: min(depth_ndcg, grades.size)]).sum())
        ideal = np.sort(np.array(list(judged.values()), dtype=np.float64))[::-1][:depth_ndcg]
        idcg = float(((2.0 ** ideal - 1) * disc[: ideal.size]).sum())
        ndcg.append(dcg / idcg if idcg > 0 else 0.0)
        hits = grades > 0
        recall.append(hits[:depth_r].sum() / n_rel if n_rel else 0.0)
        precision_at_hit = np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)
        ap.append(precision_at_hit.sum() / n_rel if n_rel else 0.0)
    return float(np.mean(ndcg)), float(np.mean(recall)), float(np.mean(ap))


def test_cranfield_reference_metrics(fitted, queries, cranfield) -> None:
    qrels = read_qrels(CRAN / "qrels.txt")
    result = fitted.retrieve([q for _, q in queries], 1000)
    ranked = [[cranfield.ids[j] for j in result.row(i)[0]] for i in range(len(queries))]
    qids = [qid for qid, _ in queries]
    ndcg, recall, ap = _ndcg_recall_ap(ranked, qids, qrels)
    assert (round(ndcg, 3), round(recall, 3), round(ap, 3)) == (0.485, 0.717, 0.385)

    run = {
        qid: {cranfield.ids[j]: float(s) for j, s in zip(*result.row(i), strict=True)}
        for i, qid in enumerate(qids)
    }
    agg = ir_measures.calc_aggregate([nDCG @ 10, R @ 100, AP], qrels, run)
    assert agg[nDCG @ 10] == pytest.approx(0.485, abs=5e-4)
    assert agg[R @ 100] == pytest.approx(0.717, abs=5e-4)
    assert agg[AP] == pytest.approx(0.385, abs=5e-4)


# ---------------------------------------------------------------------------- edge cases
def test_blank_and_unknown_queries_get_empty_rows(fitted) -> None:
    result = fitted.retrieve(["   ", "wing", "\t\n", "zzzqqq xyzzy"], 5)
    assert result.ids.shape == (4, 5)
    for i in (0, 2, 3):
        assert (result.ids[i] == PAD_ID).all()
        assert np.isneginf(result.scores[i]).all()
    assert (result.ids[1] != PAD_ID).all()


def test_k_larger_than_corpus_pads() -> None:
    model = BM25().fit(tiny(["red apple", "green apple", "blue sky"]))
    result = model.retrieve(["apple", "sky apple"], 10)
    assert result.ids.shape == (2, 10) and result.scores.dtype == np.float32
    np.testing.assert_array_equal(result.ids[0], [0, 1] + [PAD_ID] * 8)
    assert sorted(result.ids[1][:3].tolist()) == [0, 1, 2]
    assert (result.ids[1][3:] == PAD_ID).all() and np.isneginf(result.scores[1][3:]).all()


def test_k_zero_and_empty_batch(fitted) -> None:
    assert fitted.retrieve(["wing"], 0).ids.shape == (1, 0)
    assert fitted.retrieve([], 4).ids.shape == (0, 4)


@pytest.mark.parametrize("k", [-1, 2.5, True, "3", None])
def test_bad_k_is_rejected(fitted, k) -> None:
    with pytest.raises(ConfigError, match=r"The 'k' parameter of bm25 must be an int in \[0, inf\)"):
        fitted.retrieve(["wing"], k)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"k1": -0.5}, r"'k1' parameter .*greater than or equal to 0"),
        ({"b": 1.5}, r"'b' parameter .*less than or equal to 1"),
        ({"b": -0.1}, r"'b' parameter .*greater than or equal to 0"),
        ({"epsilon": -1}, r"'epsilon' parameter"),
        ({"quality_prior": -0.1}, r"'quality_prior' parameter"),
        ({"k1": float("nan")}, r"'k1' parameter"),
        ({"text_fields": []}, r"'text_fields' parameter"),
        ({"text_fields": ["title", " "]}, r"'text_fields' parameter .*non-empty field names"),
        ({"text_fields": ["title", "title"]}, r"'text_fields' parameter .*twice"),
        ({"text_fields": "title"}, r"'text_fields' parameter"),
        ({"k3": 1.0}, r"unknown key 'k3'; allowed keys: b, epsilon, field_weights, k1, quality_prior"),
    ],
)
def test_bad_params_name_the_key(params, message) -> None:
    with pytest.raises(ConfigError, match=message):
        BM25(params)


def test_unfitted_model_says_so() -> None:
    with pytest.raises(NotFittedError, match="bm25 is not fitted"):
        BM25().retrieve(["wing"], 3)


def test_analyzer_options() -> None:
    catalog = tiny(["Amélie in Paris", "the wings of desire", "a wing and a prayer"])
    assert BM25().fit(catalog).retrieve(["amelie"], 3).ids[0, 0] == PAD_ID
    assert BM25({"strip_accents": True}).fit(catalog).retrieve(["amelie"], 3).ids[0, 0] == 0
    assert (BM25({"stop_words": True}).fit(catalog).retrieve(["the a"], 3).ids == PAD_ID).all()
    assert BM25().fit(catalog).retrieve(["wing"], 3).row(0)[0].tolist() == [2]
    assert sorted(BM25({"stem": True}).fit(catalog).retrieve(["wing"], 3).row(0)[0]) == [1, 2]


def test_movie_fields_find_a_film_by_its_director() -> None:
    movies = Catalog.from_jsonl(ROOT / "data" / "movies" / "catalog.jsonl", limit=3000)
    fields = ["title", "directors", "cast", "genres", "year"]
    model = BM25({"text_fields": fields}).fit(movies)
    row = next(i for i, f in enumerate(movies.fields) if f.get("directors"))
    query = f"{movies.titles[row]} {movies.fields[row]['directors'][0]}"
    assert model.retrieve([query], 5).ids[0, 0] == row


# ---------------------------------------------------------------------------- score_items
def test_score_items_matches_retrieve_and_pads_with_nan(fitted) -> None:
    texts = ["wing slipstream", "boundary layer heat transfer"]
    result = fitted.retrieve(texts, 8)
    rows = np.concatenate([result.ids, np.full((2, 2), PAD_ID)], axis=1)
    scores = fitted.score_items(texts, rows)
    assert scores.shape == (2, 10) and scores.dtype == np.float64
    np.testing.assert_allclose(scores[:, :8], result.scores, rtol=1e-6)
    assert np.isnan(scores[:, 8:]).all()
    assert fitted.score_items(["   "], np.array([[0, 1]])).tolist() == [[0.0, 0.0]]
    one = fitted.score_items("wing slipstream", result.ids[0])
    assert one.shape == (8,)
    np.testing.assert_array_equal(one, scores[0, :8])


def test_score_items_rejects_bad_rows(fitted) -> None:
    with pytest.raises(ConfigError, match=r"rows of shape \(n_queries, m\) = \(2, m\); got shape \(3,\)"):
        fitted.score_items(["a", "b"], np.array([1, 2, 3]))
    with pytest.raises(ConfigError, match=r"row 1400 is not in \[0, 1400\)"):
        fitted.score_items(["wing"], np.array([[3, 1400]]))


# ---------------------------------------------------------------------------- persistence
def test_save_load_scores_identically(fitted, queries, tmp_path) -> None:
    texts = [q for _, q in queries[:40]]
    fitted.save(tmp_path / "bm25")
    manifest = json.loads((tmp_path / "bm25" / "manifest.json").read_text())
    assert manifest["type"] == "bm25" and manifest["params"]["k1"] == 1.5
    loaded = BM25.load(tmp_path / "bm25")
    before, after = fitted.retrieve(texts, 50), loaded.retrieve(texts, 50)
    np.testing.assert_array_equal(before.ids, after.ids)
    np.testing.assert_array_equal(before.scores, after.scores)
    rows = before.ids[:, :5]
    np.testing.assert_array_equal(fitted.score_items(texts, rows), loaded.score_items(texts, rows))


def test_load_reports_missing_and_inconsistent_files(fitted, tmp_path) -> None:
    fitted.save(tmp_path / "a")
    (tmp_path / "a" / "prior.npy").unlink()
    with pytest.raises(PersistenceError, match="missing file prior.npy"):
        BM25.load(tmp_path / "a")
    fitted.save(tmp_path / "b")
    (tmp_path / "b" / "vocab.json").write_text(json.dumps(["only", "two"]))
    with pytest.raises(PersistenceError, match=r"inconsistent files .*2 terms in vocab.json"):
        BM25.load(tmp_path / "b")


# ---------------------------------------------------------------------------- incremental
def test_add_items_equals_fresh_fit(cranfield, queries) -> None:
    head = Catalog(cranfield.ids[:1000], cranfield.titles[:1000], cranfield.texts[:1000],
                   cranfield.fields[:1000], cranfield.popularity[:1000])
    tail = Catalog(cranfield.ids[1000:], cranfield.titles[1000:], cranfield.texts[1000:],
                   cranfield.fields[1000:], cranfield.popularity[1000:])
    grown = BM25().fit(head)
    full = head.extend(tail)
    grown.add_items(full, np.arange(1000, 1400))
    fresh = BM25().fit(full)
    assert grown.n_items_ == fresh.n_items_ == 1400
    assert list(grown.vocab_) == list(fresh.vocab_)
    texts = [q for _, q in queries]
    a, b = grown.retrieve(texts, 100), fresh.retrieve(texts, 100)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.scores, b.scores)


def test_add_items_rejects_rows_that_are_not_the_appended_ones(cranfield) -> None:
    model = BM25().fit(tiny(["a b", "b c"]))
    with pytest.raises(DataError, match=r"new_rows must be rows 2\.\.2 of the catalog \(1 rows\)"):
        model.add_items(tiny(["a b", "b c", "c d"]), np.array([1]))


# ---------------------------------------------------------------------------- quality prior
def test_quality_prior_orders_equal_matches_by_popularity() -> None:
    catalog = tiny(["red apple", "red apple", "red apple", "blue sky", "apple apple pie"],
                   popularity=[1.0, 500.0, 20.0, 10_000.0, 0.0])
    plain = BM25().fit(catalog).retrieve(["red apple"], 5).row(0)[0]
    np.testing.assert_array_equal(plain, [0, 1, 2, 4])
    ranked, scores = BM25({"quality_prior": 0.05}).fit(catalog).retrieve(["red apple"], 5).row(0)
    # equal text: more popular first; the non-matching popular document stays out
    np.testing.assert_array_equal(ranked[:3], [1, 2, 0])
    assert 3 not in ranked
    assert np.all(np.diff(scores) <= 0)


# ---------------------------------------------------------------------------- properties
WORDS = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta"]


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(
    docs=st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=8), min_size=1, max_size=12),
    query_list=st.lists(st.lists(st.sampled_from([*WORDS, "unknown"]), max_size=5), min_size=1, max_size=4),
    k=st.integers(min_value=1, max_value=15),
)
def test_property_sorted_unique_and_matching_rank_bm25(docs, query_list, k) -> None:
    model = BM25().fit(tiny([" ".join(d) for d in docs]))
    ref = BM25Okapi(docs, k1=1.5, b=0.75, epsilon=0.25)
    texts = [" ".join(q) for q in query_list]
    result = model.retrieve(texts, k)
    for i, q in enumerate(query_list):
        ids, scores = result.row(i)
        assert ids.size == np.unique(ids).size
        assert np.all(np.diff(scores) <= 0)
        assert (result.ids[i, ids.size:] == PAD_ID).all()
        ties = np.flatnonzero(np.diff(scores) == 0)
        assert np.all(ids[ties] < ids[ties + 1])
        ref_scores = ref.get_scores(q)
        expected = reference_ranking(ref_scores)[:k]
        assert ids.size == expected.size
        np.testing.assert_allclose(scores, ref_scores[expected], rtol=1e-5, atol=1e-6)


def test_saved_postings_are_memory_mapped(fitted, tmp_path) -> None:
    fitted.save(tmp_path / "m")
    loaded = BM25.load(tmp_path / "m")
    for arr in (loaded.docs_, loaded.scores_, loaded.tf_, loaded.ptr_):
        assert isinstance(arr, np.memmap)
    assert loaded.docs_.dtype == np.int32 and loaded.scores_.dtype == np.float32
    assert not any(p.suffix == ".pkl" for p in (tmp_path / "m").iterdir())


def test_cost_grows_with_depth_and_corpus(fitted) -> None:
    small = BM25().fit(tiny(["red apple", "green apple"]))
    assert 0 < small.cost_ms(10) < fitted.cost_ms(10) < fitted.cost_ms(1000)


def test_negative_idf_floor_reproduces_rank_bm25_even_below_zero() -> None:
    docs = [["alpha", "beta"], ["alpha"], ["alpha", "gamma", "alpha"]]
    ref = BM25Okapi(docs, k1=1.5, b=0.75, epsilon=0.25)
    assert ref.average_idf < 0  # so the floor itself is negative
    model = BM25().fit(tiny([" ".join(d) for d in docs]))
    for query in (["alpha"], ["alpha", "beta"], ["gamma", "alpha", "alpha"]):
        ref_scores = ref.get_scores(query)
        ids, scores = model.retrieve([" ".join(query)], 5).row(0)
        np.testing.assert_array_equal(ids, reference_ranking(ref_scores))
        np.testing.assert_allclose(scores, ref_scores[ids], rtol=1e-6)
    assert model.retrieve(["alpha"], 5).scores[0, 0] < 0


# ---------------------------------------------------------------------------- field weights
def test_integer_field_weights_equal_repeating_the_field(small_movies) -> None:
    """BM25F with weight 2 on the title (tf = 2 tf_title + tf_rest, length likewise) is plain BM25
    over documents whose title appears twice: the exact oracle of the weighted index."""
    n = 400
    fields = ["title", "directors", "genres"]
    weighted = BM25({"text_fields": fields, "field_weights": {"title": 2.0}}).fit(
        Catalog(small_movies.ids[:n], small_movies.titles[:n], small_movies.texts[:n],
                small_movies.fields[:n], small_movies.popularity[:n]))
    doubled = Catalog(small_movies.ids[:n], small_movies.titles[:n], small_movies.texts[:n],
                      [{**f, "title_again": t} for f, t in zip(small_movies.fields[:n], small_movies.titles[:n],
                                                               strict=True)], small_movies.popularity[:n])
    plain = BM25({"text_fields": ["title", "title_again", "directors", "genres"]}).fit(doubled)
    queries = ["the godfather", "love story", "drama", "war", "john ford western", "zzz"]
    a, b = weighted.retrieve(queries, 30), plain.retrieve(queries, 30)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5)
    np.testing.assert_array_equal(a.ids, b.ids)
    rows = np.arange(n)[None, :].repeat(len(queries), 0)
    np.testing.assert_allclose(weighted.score_items(queries, rows), plain.score_items(queries, rows), rtol=1e-5)


def test_field_weights_survive_save_load_and_add_items(small_movies, tmp_path) -> None:
    params = {"text_fields": ["title", "directors"], "field_weights": {"title": 3.0, "directors": 0.5}}
    full = BM25(params).fit(small_movies)
    part = BM25(params).fit(Catalog(small_movies.ids[:500], small_movies.titles[:500], small_movies.texts[:500],
                                    small_movies.fields[:500], small_movies.popularity[:500]))
    part.add_items(small_movies, np.arange(500, len(small_movies)))
    qs = ["alien", "the love", "john"]
    np.testing.assert_array_equal(full.retrieve(qs, 20).ids, part.retrieve(qs, 20).ids)
    np.testing.assert_allclose(full.retrieve(qs, 20).scores, part.retrieve(qs, 20).scores, rtol=1e-6)
    full.save(tmp_path / "b")
    back = BM25.load(tmp_path / "b")
    assert back.params.field_weights == {"title": 3.0, "directors": 0.5}
    np.testing.assert_array_equal(back.retrieve(qs, 20).scores, full.retrieve(qs, 20).scores)


@pytest.mark.parametrize(("weights", "message"), [
    ({"cast": 2.0}, "field_weights names 'cast', which is not one of the text_fields ['title', 'directors']"),
    ({"title": 0.0}, "field_weights['title'] must be a finite number > 0, got 0.0"),
])
def test_field_weights_errors(weights, message) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        BM25({"text_fields": ["title", "directors"], "field_weights": weights})


def test_query_stats_say_how_fully_the_best_document_matches(fitted, reference, cranfield) -> None:
    """``bm25_top_frac`` = best score / the sum of each query term's best score in the corpus
    (one document holding both terms at their best: 1); ``bm25_top_gap`` = (best - second) /
    best; both 0 without a known term. Checked against rank_bm25's scores of every document."""
    both = tiny(["alpha beta", "alpha gamma", "gamma delta", "delta"])
    stats = BM25({"text_fields": ["text"]}).fit(both).query_stats(["alpha beta", "gamma", "unknown words", ""])
    assert stats["bm25_top_frac"][0] == pytest.approx(1.0)
    assert stats["bm25_top_frac"][2] == 0 and stats["bm25_top_frac"][3] == 0
    assert stats["bm25_top_gap"][2] == 0
    query = "boundary layer flow"
    got = fitted.query_stats([query])
    scores = np.asarray(reference.get_scores(tokenize(query)))
    best, second = np.sort(scores)[::-1][:2]
    terms = [t for t in dict.fromkeys(tokenize(query)) if t in reference.idf]
    reach = sum(max(reference.get_scores([t])) for t in terms)
    assert got["bm25_top_frac"][0] == pytest.approx(best / reach, rel=1e-4)
    assert got["bm25_top_gap"][0] == pytest.approx((best - second) / best, rel=1e-4)
