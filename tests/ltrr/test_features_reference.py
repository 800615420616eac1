"""The batched feature builder against a plain reference: every value bit for bit.

The reference is the builder as it was before the per-query overhead was removed (scipy row
slices times dense vocabulary-sized query vectors, one column at a time), kept here as the
oracle: the fast path must give the ranker exactly the rows it was trained on.
"""

import re

import numpy as np
import pytest
import scipy.sparse as sp

from ltrr.features import RRF_K, FeatureBuilder
from ltrr.text import fold_accents
from ltrr.types import Candidates, QueryBatch
from strategies.bm25 import BM25
from strategies.memory import ClickMemory

FIELDS = ["title", "directors", "cast", "genres", "year"]
QUERIES = ["drama war", "the the the man", "Amélie 2001", "ÉCOLE des femmes", "1999", "zzqx qqzz", "   ", "",
           "a", "love story 1970s", "Café Society ²³", "john ford western", "star wars episode", "x" * 40]


def _trigrams(text):
    s = " " + re.sub(r"\s+", " ", fold_accents(text).lower()).strip() + " "
    return [s[i:i + 3] for i in range(len(s) - 2)] if len(s) > 3 else []


def reference_build(catalog, bm25, memory, query, cands):
    """The features of ``cands`` (strategies ``bm25``, ``memory``) computed the plain way."""
    ranks = cands.ranks
    found = ~np.isnan(ranks)
    with np.errstate(invalid="ignore"):
        rr = np.where(np.isfinite(ranks.astype(np.float64)), 1.0 / (RRF_K + ranks.astype(np.float64)), 0.0)
    cols = [cands.scores[:, 0], ranks[:, 0], found[:, 0], cands.scores[:, 1], ranks[:, 1], found[:, 1],
            rr[:, 0], rr[:, 1], rr.sum(axis=1)]
    # the click memory: its table read directly, decayed to the query's latest update, one
    # dictionary lookup per candidate
    key = " ".join(re.findall(r"\w+", fold_accents(query.lower())))
    rows = memory._db.execute("SELECT item, impressions, clicks, updated FROM q2e WHERE query = ?", (key,)).fetchall()
    latest = max((r[3] for r in rows), default=0.0)
    hl = memory.params.half_life_s
    stats = {}
    for item, imp, clk, upd in rows:
        w = np.float64(0.5) ** (np.float64(max(latest - upd, 0.0)) / hl) if hl > 0 else 1.0
        stats[int(item)] = (np.float64(imp) * w, np.float64(clk) * w)
    m_imp = np.array([stats.get(int(i), (0.0, 0.0))[0] for i in cands.items])
    m_clk = np.array([stats.get(int(i), (0.0, 0.0))[1] for i in cands.items])
    cols += [memory.smoothed_ctr(m_imp, m_clk), m_imp, m_clk]
    title = BM25({"text_fields": ["title"], "strip_accents": True}).fit(catalog).term_weights()
    text = bm25.term_weights()
    lexical = []
    for weights in (title, text):
        toks = weights.analyze(query)
        counts = np.zeros(weights.weights.shape[1])
        for t in toks:
            if t in weights.vocabulary:
                counts[weights.vocabulary[t]] += 1.0
        rows = weights.weights.tocsr()[cands.items]
        score = rows @ counts
        present = sp.csr_matrix((np.ones_like(rows.data), rows.indices, rows.indptr), shape=rows.shape)
        hit = present @ (counts > 0).astype(np.float32)
        lexical.append((score, hit / len(set(toks)) if toks else 0.0))
    best = np.maximum(np.asarray(text.weights.max(axis=0).todense()).ravel(), 0.0)
    text_counts = np.zeros(text.weights.shape[1])
    for t in text.analyze(query):
        if t in text.vocabulary:
            text_counts[text.vocabulary[t]] += 1.0
    reach = float(text_counts @ best)
    bm25_text = lexical[1][0].astype(np.float32)
    grams = set(_trigrams(query))
    tri = [sum(g in set(_trigrams(catalog.titles[int(i)])) for g in grams) / len(grams) if grams else 0.0
           for i in cands.items]
    toks = re.findall(r"\w+", query.lower())
    stripped = query.strip()
    cols += [lexical[0][0], bm25_text, bm25_text / reach if reach > 0 else 0.0, lexical[0][1], lexical[1][1],
             np.array(tri, dtype=np.float32), np.log1p(np.maximum(catalog.popularity[cands.items], 0.0)),
             len(toks), len(stripped), sum(c.isdigit() for c in stripped) / max(len(stripped), 1),
             1.0 if re.search(r"\b(1[89]\d\d|20\d\d)s?\b", query) else 0.0, 1.0 if len(toks) == 1 else 0.0,
             found.sum(axis=1), np.fmin.reduce(ranks, axis=1)]
    out = np.empty((len(cands), len(cols)), dtype=np.float32)
    for j, c in enumerate(cols):
        out[:, j] = np.asarray(c, dtype=np.float64).astype(np.float32) if not np.isscalar(c) else c
    return out


@pytest.fixture(scope="module")
def engine(small_movies, tmp_path_factory):
    bm25 = BM25({"text_fields": FIELDS}, name="bm25").fit(small_movies)
    memory = ClickMemory(name="memory").fit(small_movies)
    # clicks and impressions, some decayed, on a few queries and items of the unions below
    for k, q in enumerate(QUERIES[:6]):
        memory.observe(q, np.array([3, 4, 5 + k, 40]), np.array([4, 5 + k]), ts=100.0 * k)
    memory.observe(QUERIES[0], np.array([4, 9]), np.array([9]), ts=1e7)
    yield small_movies, bm25, memory
    memory.close()


@pytest.mark.parametrize("depth", [1, 30, 300])
def test_every_feature_equals_the_reference_bit_for_bit(engine, depth):
    catalog, bm25, memory = engine
    fb = FeatureBuilder(catalog, {"bm25": bm25, "memory": memory}, FIELDS)
    assert fb.schema.names[:12] == ("bm25_score", "bm25_rank", "bm25_found", "memory_score", "memory_rank",
                                    "memory_found", "bm25_rr", "memory_rr", "fused_rrf", "memory_ctr",
                                    "memory_impressions", "memory_clicks")
    compared = 0
    # the last query has more than 127 distinct terms (the wide lookup table)
    for q in QUERIES + list(catalog.titles[:40]) + [" ".join(catalog.titles[:40])]:
        ids, sc = bm25.retrieve([q], depth).row(0)
        mem_ids, mem_sc = memory.retrieve([q], 20).row(0)
        # items neither list holds too (a row of a larger plan's union), and ones only the memory has
        extra = np.array([7, 11 * len(q) % len(catalog)])
        cands = Candidates.union(("bm25", "memory"), [(np.concatenate([ids, extra]),
                                                        np.concatenate([sc, [0.5, 0.25]]).astype(np.float32)),
                                                       (mem_ids, mem_sc)])
        got = fb.build(QueryBatch((q,)), cands)
        want = reference_build(catalog, bm25, memory, q, cands)
        assert got.dtype == np.float32 and got.flags.c_contiguous
        assert got.tobytes() == want.tobytes(), (q, [n for j, n in enumerate(fb.schema.names)
                                                     if got[:, j].tobytes() != want[:, j].tobytes()])
        compared += got.size
    assert compared > 1000
