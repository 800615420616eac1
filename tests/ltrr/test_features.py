"""Ranker features: schema follows the engine's strategies, values equal their oracles, batched."""

import numpy as np
import pytest

from ltrr.features import FeatureBuilder, FeatureSchema
from ltrr.types import Candidates, QueryBatch
from strategies.bm25 import BM25
from strategies.memory import ClickMemory

FIELDS = ["title", "directors", "cast", "genres", "year"]


@pytest.fixture(scope="module")
def bm25(small_movies):
    return BM25({"text_fields": FIELDS}, name="bm25").fit(small_movies)


@pytest.fixture()
def memory(small_movies):
    m = ClickMemory(name="memory").fit(small_movies)
    yield m
    m.close()


def union(bm25, query, k=50, memory_rows=()):
    res = bm25.retrieve([query], k)
    ids, sc = res.row(0)
    mem = np.asarray(memory_rows, dtype=np.int64)
    return Candidates.union(("bm25", "memory"), [(ids, sc), (mem, np.ones(mem.size, np.float32))])


def test_schema_depends_on_the_configured_strategies(small_movies, bm25, memory):
    names_only = FeatureBuilder(small_movies, ["bm25", "memory"], FIELDS).schema
    full = FeatureBuilder(small_movies, {"bm25": bm25, "memory": memory}, FIELDS).schema
    assert "memory_ctr" not in names_only.names and "memory_ctr" in full.names
    assert {"memory_impressions", "memory_clicks"} <= set(full.names)
    assert not any(n.endswith("_cosine") or n.startswith("dense") for n in full.names)
    # the BM25 strategy over the engine's text fields is reused for bm25_text (no duplicate)
    assert "bm25_match" not in full.names and "bm25_text" in full.names
    assert full.fingerprint != names_only.fingerprint
    assert FeatureSchema.from_dict(full.to_dict()) == full
    missing, extra = names_only.diff(full)
    assert missing == ["memory_ctr", "memory_impressions", "memory_clicks"] and extra == []


def test_values_equal_their_oracles(small_movies, bm25, memory):
    fb = FeatureBuilder(small_movies, {"bm25": bm25, "memory": memory}, FIELDS)
    query = small_movies.titles[12]
    memory.observe(query, np.array([3, 4, 5]), np.array([4]), ts=100.0)
    memory.observe(query, np.array([4, 6]), np.array([4, 6]), ts=100.0)
    cands = union(bm25, query, memory_rows=[4, 6])
    X = fb.build(query, cands)
    col = {n: X[:, i] for i, n in enumerate(fb.schema.names)}
    items = cands.items
    # BM25 per field: the strategy's own score_items is the oracle
    np.testing.assert_allclose(col["bm25_text"], bm25.score_items([query], items[None])[0], rtol=1e-5)
    title_bm25 = BM25({"text_fields": ["title"], "strip_accents": True}).fit(small_movies)
    np.testing.assert_allclose(col["bm25_title"], title_bm25.score_items([query], items[None])[0], rtol=1e-5)
    # provenance: missing is NaN, not 0
    not_found = ~cands.found[:, 0]
    assert np.isnan(col["bm25_score"][not_found]).all() and np.isnan(col["bm25_rank"][not_found]).all()
    np.testing.assert_array_equal(col["bm25_found"], cands.found[:, 0])
    # click memory: impressions/clicks of the (query, item) pair
    where = {int(r): i for i, r in enumerate(items)}
    # (impressions weighted by the examination of the position shown: 1/2 then 1/1)
    assert col["memory_impressions"][where[4]] == pytest.approx(1.5)
    assert col["memory_clicks"][where[4]] == pytest.approx(2.0)
    # the memory's smoothed CTR: (clicks + 0.05 * 5) / (impressions + 5)
    assert col["memory_ctr"][where[6]] == pytest.approx((1.0 + 0.25) / (0.5 + 5.0))
    if 3 in where:
        assert col["memory_ctr"][where[3]] == pytest.approx(0.25 / (1.0 + 5.0))
    unseen = ~np.isin(items, [3, 4, 5, 6])
    # a pair never shown gets the memory's prior CTR (between clicked and shown-but-ignored)
    assert (col["memory_ctr"][unseen] == pytest.approx(0.05)) and (col["memory_impressions"][unseen] == 0).all()
    # the film whose title is the query: every title token and trigram overlaps
    assert col["title_overlap"][where[12]] == pytest.approx(1.0)
    assert col["title_trigram_overlap"][where[12]] == pytest.approx(1.0)
    np.testing.assert_allclose(col["log_popularity"], np.log1p(small_movies.popularity[items]), rtol=1e-6)
    np.testing.assert_array_equal(col["n_found_by"], cands.found.sum(axis=1))


def test_trigram_and_query_hint_values(small_movies, bm25):
    fb = FeatureBuilder(small_movies, {"bm25": bm25}, FIELDS)
    row = 12
    title = small_movies.titles[row]
    cands = Candidates.union(("bm25",), [(np.array([row]), np.array([1.0], np.float32))])
    X = fb.build("zzqx 1999", cands)[0]
    col = dict(zip(fb.schema.names, X, strict=True))
    assert col["query_tokens"] == 2 and col["query_chars"] == 9
    assert col["query_has_year"] == 1.0 and col["query_single_token"] == 0.0
    assert col["query_digit_frac"] == pytest.approx(4 / 9)
    assert col["title_overlap"] == 0.0 and col["bm25_title"] == 0.0
    # " ab" style trigrams: query "the" against the title counts exact shared trigrams
    q = title.split()[0]
    X = fb.build(q, cands)[0]
    col = dict(zip(fb.schema.names, X, strict=True))
    qg = {f" {q.lower()} "[i:i + 3] for i in range(len(q))}
    tg = {f" {' '.join(title.lower().split())} "[i:i + 3] for i in range(len(title))}
    assert col["title_trigram_overlap"] == pytest.approx(len(qg & tg) / len(qg))


def test_batched_build_equals_row_by_row(small_movies, bm25, memory):
    fb = FeatureBuilder(small_movies, {"bm25": bm25, "memory": memory}, FIELDS)
    query = "drama war"
    cands = union(bm25, query, k=300)
    X = fb.build(QueryBatch((query,)), cands)
    assert X.shape == (len(cands), len(fb.schema.names)) and X.dtype == np.float32
    for i in (0, len(cands) // 2, len(cands) - 1):
        one = Candidates(cands.strategies, cands.items[i:i + 1], cands.scores[i:i + 1], cands.ranks[i:i + 1])
        np.testing.assert_array_equal(fb.build(query, one), X[i:i + 1])


def test_empty_union_and_blank_query(small_movies, bm25):
    fb = FeatureBuilder(small_movies, {"bm25": bm25}, FIELDS)
    empty = Candidates.union(("bm25",), [(np.empty(0, np.int64), np.empty(0, np.float32))])
    assert fb.build("x", empty).shape == (0, len(fb.schema.names))
    cands = Candidates.union(("bm25",), [(np.array([1, 2]), np.array([1.0, 0.5], np.float32))])
    X = fb.build("   ", cands)
    col = dict(zip(fb.schema.names, X.T, strict=True))
    assert (col["title_overlap"] == 0).all() and (col["title_trigram_overlap"] == 0).all()


def test_a_term_repeated_past_the_narrow_table_and_a_bad_item(small_movies, bm25):
    """A query count above 127 takes the wide lookup table, and the BM25 columns still equal the
    scipy product bit for bit; an item outside the catalog raises, naming it, and leaves the
    per-thread table clean for the next query."""
    import scipy.sparse as sp

    fb = FeatureBuilder(small_movies, {"bm25": bm25}, FIELDS)

    def bm25_union(q, k):
        return Candidates.union(("bm25",), [bm25.retrieve([q], k).row(0)])

    query = "war " * 130 + "drama story drama"
    cands = bm25_union(query, 60)
    X = fb.build(query, cands)
    col = dict(zip(fb.schema.names, X.T, strict=True))
    text = bm25.term_weights()
    counts = np.zeros(text.weights.shape[1])
    for t in text.analyze(query):
        counts[text.vocabulary[t]] += 1.0
    assert counts.max() == 130
    rows = sp.csr_matrix(text.weights)[cands.items]
    want = (rows @ counts).astype(np.float32)
    assert col["bm25_text"].tobytes() == want.tobytes() and (want > 0).any()
    rows.data[:] = 1.0
    hits = (rows @ (counts > 0)).astype(np.float32)  # of the 3 distinct query terms
    assert col["text_overlap"].tobytes() == (hits / np.float32(3)).tobytes() and (hits == 2).any()
    fb.build("drama war", bm25_union("drama war", 5))
    narrow = fb._lexical._tables.int8  # this thread's table of the narrow queries
    bad = Candidates.union(("bm25",), [(np.array([1, len(small_movies)]), np.array([1.0, 0.5], np.float32))])
    with pytest.raises(IndexError, match=f"candidate item {len(small_movies)} is not a catalog row"):
        fb.build("drama war", bad)
    assert not narrow.any()
    fb.build("drama war", bm25_union("drama war", 5))
    assert not narrow.any()
    # the same features as before the failed request
    again = fb.build(query, cands)
    assert again.tobytes() == X.tobytes()


def test_dense_cosine_only_with_a_dense_strategy_and_shared_query_embedding(small_movies, bm25):
    from strategies.dense import DenseRetriever

    rng = np.random.default_rng(0)
    dense = DenseRetriever(name="dense")
    vecs = rng.normal(size=(len(small_movies), dense.dim)).astype(np.float32)
    dense.fit_vectors(vecs / np.linalg.norm(vecs, axis=1, keepdims=True))
    fb = FeatureBuilder(small_movies, {"bm25": bm25, "dense": dense}, FIELDS)
    assert "dense_match" in fb.schema.names
    batch = QueryBatch(("space adventure",))
    q = dense.embed_queries(batch)  # computed once, reused by the feature through the memo
    cands = union(bm25, "space", k=40)
    X = fb.build(batch, cands)
    expected = dense.embeddings_[cands.items] @ q[0]
    np.testing.assert_allclose(X[:, fb.schema.index("dense_match")], expected, rtol=1e-5, atol=1e-6)


def test_match_of_a_strategy_left_off_is_scored_or_missing_as_configured(small_movies, bm25):
    """``match_when_off="score"`` computes dense's cosine although the plan left dense off (the
    query is encoded in the ranker stage); ``"missing"`` leaves it NaN and never encodes."""
    from ltrr.features import ProvenanceColumns
    from strategies.dense import DenseRetriever

    rng = np.random.default_rng(0)
    dense = DenseRetriever(name="dense")
    vecs = rng.normal(size=(len(small_movies), dense.dim)).astype(np.float32)
    dense.fit_vectors(vecs / np.linalg.norm(vecs, axis=1, keepdims=True))
    ids, sc = bm25.retrieve(["space"], 40).row(0)
    empty = (np.empty(0, np.int64), np.empty(0, np.float32))
    off = Candidates.union(("bm25", "dense"), [(ids, sc), empty], (40, 0))
    col = None
    for mode in ("score", "missing"):
        fb = FeatureBuilder(small_movies, {"bm25": bm25, "dense": dense}, FIELDS, match_when_off=mode)
        col = fb.schema.index("dense_match")
        batch = QueryBatch(("space adventure",))
        X = fb.build(batch, off)
        if mode == "score":
            q = dense.embed_queries(batch)
            np.testing.assert_allclose(X[:, col], dense.embeddings_[off.items] @ q[0], rtol=1e-5, atol=1e-6)
        else:
            assert np.isnan(X[:, col]).all()
            on = Candidates.union(("bm25", "dense"), [(ids, sc), (ids[:5], sc[:5])], (40, 5))
            X_on = fb.build(batch, on)
            assert not np.isnan(X_on[:, col]).any()  # dense ran: scored
            # hindsight's mask of the row where dense ran gives the off plan's row bit for bit
            r = np.where(on.found, on.ranks, np.inf)
            keep = r <= np.array([40, 0])[None, :]
            masked = ProvenanceColumns(fb.schema, match_when_off=mode).mask(
                X_on.copy(), keep, r, np.array([True, False]))
            where = {int(v): i for i, v in enumerate(on.items)}
            np.testing.assert_array_equal(masked[[where[int(v)] for v in off.items]], X)
            scored = ProvenanceColumns(fb.schema).mask(X_on.copy(), keep, r, np.array([True, False]))
            assert not np.isnan(scored[:, col]).any()  # the "score" mask keeps the cosine
    with pytest.raises(ValueError, match="match_when_off"):
        FeatureBuilder(small_movies, {"bm25": bm25}, FIELDS, match_when_off="skip")
    with pytest.raises(ValueError, match="match_when_off"):
        ProvenanceColumns(fb.schema, match_when_off="skip")  # type: ignore[arg-type]


def test_fusion_columns_equal_rrf_of_the_union_and_bm25_frac_is_scaled(small_movies, bm25, memory):
    from ltrr.features import RRF_K
    from ltrr.ranking.fusion import rrf_scores

    fb = FeatureBuilder(small_movies, {"bm25": bm25, "memory": memory}, FIELDS)
    query = small_movies.titles[12]
    cands = union(bm25, query, memory_rows=[4, 6, 12])
    X = fb.build(query, cands)
    col = {n: X[:, i] for i, n in enumerate(fb.schema.names)}
    np.testing.assert_allclose(col["fused_rrf"], rrf_scores(cands, RRF_K), rtol=1e-6)
    found = cands.found[:, 0]
    np.testing.assert_allclose(col["bm25_rr"][found], 1.0 / (RRF_K + cands.ranks[found, 0]), rtol=1e-6)
    assert (col["bm25_rr"][~found] == 0).all() and (col["memory_rr"][~cands.found[:, 1]] == 0).all()
    # BM25 over the largest score the query's terms can reach: same order, scale [0, 1]
    frac = col["bm25_text_frac"]
    assert 0.0 < frac.max() <= 1.0 and frac.min() >= 0.0
    ratio = frac[col["bm25_text"] > 0] / col["bm25_text"][col["bm25_text"] > 0]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-5)


def test_provenance_mask_gives_the_row_the_smaller_plan_builds(small_movies, bm25, memory):
    """A max-depth row with the provenance of a smaller plan rewritten equals the row that plan's
    own union builds (the contract simulators.hindsight relies on), bit for bit."""
    from ltrr.features import ProvenanceColumns

    fb = FeatureBuilder(small_movies, {"bm25": bm25, "memory": memory}, FIELDS)
    query = "drama war"
    ids, sc = bm25.retrieve([query], 60).row(0)
    mem = np.array([ids[3], ids[40], 7, 9], dtype=np.int64)
    full = Candidates.union(("bm25", "memory"), [(ids, sc), (mem, np.linspace(1, 0.5, 4).astype(np.float32))])
    X_full = fb.build(query, full)
    small = Candidates.union(("bm25", "memory"), [(ids[:10], sc[:10]), (mem[:2], np.linspace(1, 0.5, 4)[:2].astype(np.float32))])
    X_small = fb.build(query, small)
    depth = np.array([10, 2])
    r = np.where(full.found, full.ranks, np.inf)
    keep = r <= depth[None, :]
    in_plan = keep.any(axis=1)
    masked = ProvenanceColumns(fb.schema).mask(X_full[in_plan].copy(), keep[in_plan], r[in_plan])
    where = {int(v): i for i, v in enumerate(full.items[in_plan])}
    order = [where[int(v)] for v in small.items]
    np.testing.assert_array_equal(masked[order], X_small)
    # the caller may list the strategies in another order
    swapped = ProvenanceColumns(fb.schema, ("memory", "bm25")).mask(
        X_full[in_plan].copy(), keep[in_plan][:, ::-1], r[in_plan][:, ::-1])
    np.testing.assert_array_equal(swapped[order], X_small)
    with pytest.raises(ValueError, match=r"no provenance columns \['dense_score'"):
        ProvenanceColumns(fb.schema, ("bm25", "dense"))


def test_a_strategy_the_plan_left_off_has_missing_provenance_not_zero(small_movies, bm25, memory):
    """With the memory at depth 0 its found/rr are NaN (it did not look), while a strategy that ran
    and missed an item has found 0 and rr 0; fused_rrf sums the strategies that ran; the
    hindsight mask of a max-depth row with ``ran`` gives the same row bit for bit."""
    from ltrr.features import ProvenanceColumns

    fb = FeatureBuilder(small_movies, {"bm25": bm25, "memory": memory}, FIELDS)
    names = fb.schema.names
    query = "drama war"
    ids, sc = bm25.retrieve([query], 30).row(0)
    mem = (np.array([ids[3], 7], dtype=np.int64), np.array([1.0, 0.5], dtype=np.float32))
    full = Candidates.union(("bm25", "memory"), [(ids, sc), mem], (30, 10))
    X_full = fb.build(query, full)
    assert not np.isnan(X_full[:, names.index("memory_found")]).any()
    off = Candidates.union(("bm25", "memory"), [(ids[:10], sc[:10]), (np.empty(0, np.int64), np.empty(0, np.float32))],
                           (10, 0))
    assert off.ran.tolist() == [True, False]
    X_off = fb.build(query, off)
    assert np.isnan(X_off[:, names.index("memory_found")]).all()
    assert np.isnan(X_off[:, names.index("memory_rr")]).all()
    np.testing.assert_array_equal(X_off[:, names.index("bm25_found")], 1.0)
    np.testing.assert_allclose(X_off[:, names.index("fused_rrf")], X_off[:, names.index("bm25_rr")])
    # unknown depths (a union built without them): every strategy counts as run, as before
    legacy = fb.build(query, Candidates.union(("bm25", "memory"), [(ids[:10], sc[:10]), mem]))
    assert not np.isnan(legacy[:, names.index("memory_found")]).any()
    r = np.where(full.found, full.ranks, np.inf)
    keep = r <= np.array([10, 0])[None, :]
    rows = np.flatnonzero(keep.any(axis=1))
    masked = ProvenanceColumns(fb.schema).mask(X_full[rows].copy(), keep[rows], r[rows], np.array([True, False]))
    where = {int(v): i for i, v in enumerate(full.items[rows])}
    np.testing.assert_array_equal(masked[[where[int(v)] for v in off.items]], X_off)
    with pytest.raises(ValueError, match="1 depths for 2 strategies"):
        Candidates.union(("bm25", "memory"), [(ids, sc), mem], (30,))


def test_monotone_directions_follow_the_meaning_of_each_feature(small_movies, bm25, memory):
    from ltrr.features import monotone_directions

    fb = FeatureBuilder(small_movies, {"bm25": bm25, "memory": memory}, FIELDS)
    d = dict(zip(fb.schema.names, monotone_directions(fb.schema), strict=True))
    for up in ("bm25_score", "bm25_found", "bm25_rr", "fused_rrf", "bm25_text", "bm25_text_frac",
               "title_overlap", "memory_ctr", "memory_clicks", "n_found_by"):
        assert d[up] == 1, up
    for down in ("bm25_rank", "memory_rank", "best_rank"):
        assert d[down] == -1, down
    for free in ("memory_impressions", "log_popularity", "query_tokens", "query_single_token"):
        assert d[free] == 0, free


def test_lexical_blocks_are_stacked_a_slice_of_rows_at_a_time_exactly_as_one_hstack():
    """The feature builder's document-major copy of the title / text / trigram matrices, built a
    few rows at a time from CSR or term-major CSC blocks, is the sorted CSR of one ``hstack``,
    and the text block's column maxima (floored at 0) come out of the same pass."""
    import scipy.sparse as sp

    from ltrr.features import _stack_rows

    rng = np.random.default_rng(3)
    title = sp.random(23, 7, density=0.3, format="csr", dtype=np.float32, random_state=1)
    text = sp.random(23, 11, density=0.4, format="csc", dtype=np.float32, random_state=2)
    text.data -= 0.2  # some negative weights: the maxima are floored at 0
    tri = sp.csr_matrix((rng.random((23, 5)) < 0.3).astype(np.float32))
    want = sp.hstack([title, text, tri], format="csr", dtype=np.float32)
    want.sort_indices()
    for rows in (1, 4, 23, 100):
        indptr, indices, data, best = _stack_rows([title, text, tri], text_block=1, rows_per_chunk=rows)
        np.testing.assert_array_equal(indptr, want.indptr)
        np.testing.assert_array_equal(indices, want.indices)
        np.testing.assert_array_equal(data, want.data)
        np.testing.assert_array_equal(best, np.maximum(np.asarray(text.max(axis=0).todense()).ravel(), 0.0))
