"""Compared runs start from independent copies of every learning strategy: the second run must
not inherit the first run's clicks (an XR-Linear instance shared between runs once carried the
first run's click buffer and retrained model into the next)."""

from __future__ import annotations

from ltrr.config import parse_config
from simulators import session
from simulators.movies import MovieQueryGenerator
from simulators.session import PolicySpec, compare_policies

FIELDS = ["title", "directors", "cast", "genres", "year"]


def test_every_run_starts_with_no_observed_clicks(movie_catalog_path, small_movies, monkeypatch):
    cfg = parse_config({
        "seed": 2,
        "catalog": {"path": str(movie_catalog_path), "text_fields": FIELDS, "limit": 800},
        "strategies": [{"name": "bm25", "depths": [10]}, {"name": "memory", "depths": [0, 10]},
                       {"name": "xmr", "depths": [0, 10], "retrain_every": 5,
                        "params": {"text_fields": ["title"], "seed": 0}}],
        "policy": {"type": "fixed"}, "ranker": {"retrain_every": 0},
    }, "test")
    stream = MovieQueryGenerator(small_movies, seed=0).stream(40, 10, seed=0)
    seen = []
    real = session.run_session

    def spy(engine, *args, **kwargs):
        xmr, memory = engine.strategies["xmr"], engine.strategies["memory"]
        seen.append((xmr.n_observed, xmr.n_pairs_, memory.counts()["entries"], id(xmr), id(memory)))
        result = real(engine, *args, **kwargs)
        seen.append((engine.strategies["xmr"].n_pairs_, memory.counts()["entries"]))
        return result

    monkeypatch.setattr(session, "run_session", spy)
    specs = [PolicySpec("all", "fixed", {}), PolicySpec("again", "fixed", {})]
    results, report = compare_policies(cfg, small_movies, stream, specs=specs, progress=False)
    (obs1, pairs1, mem1, xmr1, memid1), (learned_pairs, learned_mem), (obs2, pairs2, mem2, xmr2, memid2), _ = seen
    assert learned_pairs > 0 and learned_mem > 0  # the first run did learn (clicks, a retrained xmr)
    assert (obs1, pairs1, mem1) == (0, 0, 0)
    assert (obs2, pairs2, mem2) == (0, 0, 0)  # ... and the second run starts from scratch
    assert xmr1 != xmr2 and memid1 != memid2
    # two identical policies on one stream: identical runs
    a, b = report["policies"]["all"], report["policies"]["again"]
    assert a["ndcg@10"] == b["ndcg@10"] and a["clicks_per_query"] == b["clicks_per_query"]


def test_engines_that_share_a_dense_index_do_not_share_query_caches(small_movies):
    from strategies.dense import DenseRetriever

    dense = DenseRetriever({"text_fields": ["title"]}).fit(
        type(small_movies)(small_movies.ids[:50], small_movies.titles[:50], small_movies.texts[:50],
                           small_movies.fields[:50], small_movies.popularity[:50]))
    a, b = dense.with_fresh_caches(), dense.with_fresh_caches()
    a.retrieve(["heat"], 5)
    assert a.query_cache.stats().misses == 1 and b.query_cache.stats().misses == 0
    b.retrieve(["heat"], 5)
    assert b.query_cache.stats().hits == 0  # b encoded it itself: no warm answer from a
    assert a.index_ is b.index_  # the fitted index is shared, not copied
