import sqlite3

import numpy as np
import pytest

from ltrr.errors import ConfigError
from strategies.memory import ClickMemory


def test_ranks_by_smoothed_ctr_and_normalizes_queries():
    m = ClickMemory({"half_life_s": 0, "prior_ctr": 0.0, "prior_weight": 1.0})
    m.observe("Heat", np.array([1, 2, 3]), np.array([2]), 0.0)
    m.observe("  heat!! ", np.array([1, 2, 3]), np.array([2, 3]), 10.0)
    r = m.retrieve(["HEAT", "other", "   "], 5)
    # item 2: 2 clicks / 2 imps -> 2/3 smoothed; item 3: 1/2 -> 1/3; item 1 has no clicks
    assert r.ids.tolist()[0] == [2, 3, -1, -1, -1]
    assert r.scores[0, :2] == pytest.approx([2 / 3, 1 / 3])
    assert (r.ids[1:] == -1).all()


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
