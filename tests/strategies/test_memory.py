import sqlite3

import numpy as np
import pytest

from ltrr.errors import ConfigError
from strategies.memory import ClickMemory


def test_ranks_by_smoothed_ctr_and_normalizes_queries():
    m = ClickMemory({"half_life_s": 0, "prior_ctr": 0.0, "prior_weight": 1.0, "examination_eta": 0.0})
    m.observe("Heat", np.array([1, 2, 3]), np.array([2]), 0.0)
    m.observe("  heat!! ", np.array([1, 2, 3]), np.array([2, 3]), 10.0)
    r = m.retrieve(["HEAT", "other", "   "], 5)
    # item 2: 2 clicks / 2 imps -> 2/3 smoothed; item 3: 1/2 -> 1/3; item 1 has no clicks
    assert r.ids.tolist()[0] == [2, 3, -1, -1, -1]
    assert r.scores[0, :2] == pytest.approx([2 / 3, 1 / 3])
    assert (r.ids[1:] == -1).all()


def test_impressions_are_weighted_by_the_examination_of_their_position():
    m = ClickMemory({"half_life_s": 0, "min_clicks": 0.0})
    # page order 5, 3, 9: positions 1, 2, 3 count 1, 1/2, 1/3 impressions (eta 1)
    m.observe("q", np.array([5, 3, 9]), np.array([9]), 0.0)
    m.observe("q", np.array([9, 5]), np.array([]), 1.0)
    imp, clk = m.item_stats("q", np.array([5, 3, 9, 4]))
    assert imp.tolist() == pytest.approx([1.5, 0.5, 1 / 3 + 1.0, 0.0])
    assert clk.tolist() == [0.0, 0.0, 1.0, 0.0]
    # a click low on the page says more than the same click on top: CTR over examined impressions
    p = m.params
    assert m.smoothed_ctr(imp, clk)[2] == pytest.approx((1 + p.prior_ctr * p.prior_weight) / (4 / 3 + p.prior_weight))
    flat = ClickMemory({"half_life_s": 0, "examination_eta": 0.0})
    flat.observe("q", np.array([5, 3, 9]), np.array([9]), 0.0)
    assert flat.item_stats("q", np.array([5, 3, 9]))[0].tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ConfigError, match="examination_eta"):
        ClickMemory({"examination_eta": -1.0})


def test_exponential_decay_by_half_life():
    m = ClickMemory({"half_life_s": 100.0, "min_clicks": 0.0})
    m.observe("q", np.array([7]), np.array([7]), 0.0)
    m.observe("q", np.array([7]), np.array([]), 100.0)
    rows = m._db.execute("SELECT impressions, clicks FROM q2e").fetchall()
    assert rows[0] == pytest.approx((1.5, 0.5))
    stats = m.query_stats(["q", "unseen"])
    assert stats["memory_ctr"].tolist() == pytest.approx([0.5 / 1.5, 0.0])


def test_save_load_roundtrip(tmp_path):
    m = ClickMemory()
    m.observe("a b", np.array([1, 2]), np.array([1]), 5.0)
    m.save(tmp_path / "mem")
    m2 = ClickMemory.load(tmp_path / "mem")
    a, b = m.retrieve(["a b"], 3), m2.retrieve(["a b"], 3)
    assert a.ids.tolist() == b.ids.tolist() and np.array_equal(a.scores, b.scores)


def test_file_backed_memory_uses_wal(tmp_path):
    path = tmp_path / "m.sqlite"
    m = ClickMemory({"path": str(path)})
    m.observe("x", np.array([1]), np.array([1]), 0.0)
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_bad_params_and_k():
    with pytest.raises(ConfigError, match=r"the 'prior_ctr' parameter input should be less than or equal to 1"):
        ClickMemory({"prior_ctr": 2.0})
    with pytest.raises(ConfigError, match=r"The 'k' parameter of memory must be an int in \[0, inf\). Got -1 instead"):
        ClickMemory().retrieve(["x"], -1)


def test_quotes_and_sql_text_are_plain_text():
    m = ClickMemory()
    q = "'; DROP TABLE q2e; --"
    m.observe(q, np.array([1]), np.array([1]), 0.0)
    assert m.retrieve([q], 2).ids.tolist() == [[1, -1]]
    assert m.counts()["entries"] == 1


# ---------------------------------------------------------------------------- cold start
def _cold_catalog():
    from ltrr.catalog import Catalog

    def film(i, title, year, genres, directors, cast, pop):
        return {"id": f"f{i}", "title": title, "popularity": pop,
                "fields": {"year": year, "genres": genres, "directors": directors, "cast": cast}}

    return Catalog.from_records([
        film(0, "The Heat", 1995, ["Crime"], ["Michael Mann"], ["Al Pacino", "Robert De Niro"], 900),
        film(1, "Collateral", 2004, ["Crime", "Thriller"], ["Michael Mann"], ["Tom Cruise"], 500),
        film(2, "Ronin", 1998, ["Crime"], ["John Frankenheimer"], ["Robert De Niro"], 300),
        film(3, "Casino", 1995, ["Crime"], ["Martin Scorsese"], ["Robert De Niro"], 10),
    ])


def test_cold_start_is_off_by_default():
    m = ClickMemory().fit(_cold_catalog())
    assert m.counts() == {"entries": 0, "queries": 0, "observed": 0, "predicted": 0, "predicted_queries": 0}
    assert (m.retrieve(["the heat"], 3).ids == -1).all()


def test_cold_start_predictions_then_replaced_by_clicks():
    cat = _cold_catalog()
    m = ClickMemory({"cold_start": True, "predicted_ctr": 0.2}).fit(cat)
    n_pred = m.counts()["predicted"]
    assert n_pred > 0 and m.counts()["observed"] == 0
    # title, title without article, title + year, person + title
    assert m.retrieve(["The Heat"], 2).ids[0].tolist() == [0, -1]
    assert m.retrieve(["heat"], 2).scores[0, 0] == pytest.approx(0.2 * 0.9)
    assert m.retrieve(["heat 1995"], 1).ids[0, 0] == 0
    assert m.retrieve(["michael mann collateral"], 1).ids[0, 0] == 1
    # genre + year names several films: the popular one first
    assert m.retrieve(["crime 1995"], 3).ids[0].tolist() == [0, 3, -1]
    # a click on Casino for "crime 1995" replaces its prediction with observed statistics;
    # The Heat, shown and not clicked, loses its prediction too (clicks below min_clicks)
    m.observe("crime 1995", np.array([0, 3]), np.array([3]), 0.0)
    c = m.counts()
    assert c["observed"] == 2 and c["predicted"] == n_pred - 2
    r = m.retrieve(["crime 1995"], 3)
    assert r.ids[0].tolist() == [3, -1, -1]
    # Casino was shown second: half an examined impression
    assert r.scores[0, 0] == pytest.approx((1 + 0.05 * 5) / (0.5 + 5))


def test_cold_start_add_items_and_save_load(tmp_path):
    cat = _cold_catalog()
    from ltrr.catalog import Catalog

    base = Catalog.from_records([{"id": cat.ids[i], "title": cat.titles[i], "popularity": cat.popularity[i],
                                  "fields": cat.fields[i]} for i in range(3)])
    m = ClickMemory({"cold_start": True}).fit(base)
    assert (m.retrieve(["casino"], 1).ids == -1).all()
    m.add_items(cat, np.array([3]))
    assert m.retrieve(["casino"], 1).ids[0, 0] == 3
    m.save(tmp_path / "m")
    loaded = ClickMemory.load(tmp_path / "m")
    assert loaded.counts() == m.counts()
    assert loaded.retrieve(["casino 1995"], 1).ids[0, 0] == 3
    # a memory saved before cold start existed (no q2e_pred table) still loads and works
    import sqlite3 as _sq

    db = _sq.connect(tmp_path / "m" / "memory.sqlite")
    db.execute("DROP TABLE q2e_pred")
    db.commit()
    db.close()
    old = ClickMemory.load(tmp_path / "m")
    assert old.counts()["predicted"] == 0


def test_cold_start_sql_text_in_titles_is_plain_text():
    from ltrr.catalog import Catalog

    cat = Catalog.from_records([{"id": "x", "title": "'; DROP TABLE q2e_pred; --", "fields": {"year": 2000}}])
    m = ClickMemory({"cold_start": True}).fit(cat)
    assert m.retrieve(["'; DROP TABLE q2e_pred; --"], 1).ids[0, 0] == 0
    assert m.counts()["predicted"] >= 1


# ---------------------------------------------------------------------------- read cache
def _reads(m: ClickMemory, queries, rows) -> list:
    out = []
    for q in queries:
        r = m.retrieve([q], 5)
        out.append((r.ids.tolist(), r.scores.tolist(), m.query_stats([q])["memory_ctr"].tolist(),
                    [a.tolist() for a in m.item_stats(q, rows)]))
    return out


def test_cached_reads_equal_fresh_reads_after_every_write():
    """Every read of a cached memory equals the same read of one without a cache, with writes
    (feedback) between reads of the same queries: a kept entry is never stale."""
    cached, fresh = ClickMemory({"half_life_s": 50.0}), ClickMemory({"half_life_s": 50.0, "cache_queries": 0})
    queries, rows = ["heat", "Heat!", "ronin", "unseen"], np.array([1, 2, 3, 4, 9])
    rng = np.random.default_rng(0)
    for step in range(30):
        q = queries[step % 3]
        shown = rng.permutation(np.arange(1, 10))[:4]
        clicked = shown[rng.random(4) < 0.5]
        for m in (cached, fresh):
            m.observe(q, shown, clicked, float(step))
        assert _reads(cached, queries, rows) == _reads(fresh, queries, rows), step
    assert cached._cache and not fresh._cache
    # a click changes the very next read of its query (the entry read before it was dropped)
    before = cached.item_stats("ronin", np.array([7]))[1][0]
    for m in (cached, fresh):
        m.observe("ronin", np.array([7]), np.array([7]), 30.0)
    after = cached.item_stats("ronin", np.array([7]))[1][0]
    assert after > before and after == fresh.item_stats("ronin", np.array([7]))[1][0]


def test_read_cache_is_bounded_and_read_only():
    m = ClickMemory({"cache_queries": 2, "half_life_s": 0})
    for q in ("a", "b", "c"):
        m.observe(q, np.array([1]), np.array([1]), 0.0)
        m.query_stats([q])
    assert list(m._cache) == ["b", "c"]
    items, counts = m._cache["c"]
    with pytest.raises(ValueError, match="read-only"):
        counts[0, 0] = 5.0
    assert m.item_stats("c", np.array([1]))[0].tolist() == [1.0]


def test_read_cache_sees_load_and_other_connections(tmp_path):
    m = ClickMemory({"half_life_s": 0})
    m.observe("q", np.array([1]), np.array([1]), 0.0)
    assert m.item_stats("q", np.array([1]))[1].tolist() == [1.0]
    other = ClickMemory({"half_life_s": 0})
    other.observe("q", np.array([1, 2]), np.array([2]), 0.0)
    other.save(tmp_path / "saved")
    m._load(tmp_path / "saved", {})  # replaces the database in place: the cache goes with it
    assert m.item_stats("q", np.array([1, 2]))[1].tolist() == [0.0, 1.0]
    # two connections to one file (e.g. two processes): a commit by one empties the other's cache
    path = str(tmp_path / "shared.sqlite")
    a, b = ClickMemory({"path": path, "half_life_s": 0}), ClickMemory({"path": path, "half_life_s": 0})
    a.observe("q", np.array([1]), np.array([1]), 0.0)
    assert b.item_stats("q", np.array([1]))[1].tolist() == [1.0]
    a.observe("q", np.array([1]), np.array([1]), 1.0)
    assert b.item_stats("q", np.array([1]))[1].tolist() == [2.0]
    assert b.retrieve(["q"], 1).ids.tolist() == [[1]]
    a.close()
    b.close()
