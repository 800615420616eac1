"""Per-strategy recent success rates: decayed means, context features, persistence."""

from __future__ import annotations

import numpy as np
import pytest

from ltrr.config import parse_config
from ltrr.engine import Engine
from ltrr.errors import ConfigError
from ltrr.store.engine_dir import load_state, save_state
from ltrr.success import StrategySuccess
from ltrr.types import Feedback

FIELDS = ["title", "directors", "cast", "genres", "year"]


def test_rates_are_decayed_means_over_the_events_a_strategy_ran_on():
    s = StrategySuccess(["bm25", "dense"], half_life=2.0)
    np.testing.assert_array_equal(s.rates(), [0.0, 0.0])
    s.observe([10, 0], [True, False])  # dense did not run: untouched
    np.testing.assert_array_equal(s.rates(), [1.0, 0.0])
    assert s.runs[1] == 0.0
    s.observe([10, 5], [False, True])
    d = 0.5 ** 0.5
    assert s.rates()[0] == pytest.approx(d / (d + 1))  # the older hit weighs 2^-1/2
    assert s.rates()[1] == 1.0
    for _ in range(40):  # a long run of misses: the old hit is forgotten
        s.observe([10, 5], [False, False])
    assert s.rates()[0] < 1e-5
    back = StrategySuccess.from_dict(s.to_dict())
    np.testing.assert_array_equal(back.rates(), s.rates())
    assert back.signals(3)["success_dense"].tolist() == [s.rates()[1]] * 3
    with pytest.raises(ValueError, match="half_life must be > 0"):
        StrategySuccess(["bm25"], half_life=0)


def _config(path, **over):
    data = {
        "seed": 3,
        "catalog": {"path": str(path), "text_fields": FIELDS, "limit": 800},
        "strategies": [{"name": "bm25", "depths": [0, 10, 50]}, {"name": "memory", "depths": [0, 10]}],
        "policy": {"type": "epsilon_greedy", "params": {"epsilon": 0.2}, "budget": 100,
                   "success_half_life": 50},
        "context_features": ["bias", "n_tokens", "success_bm25", "success_memory"],
    }
    data.update(over)
    return parse_config(data, "test")


def test_success_features_reach_the_policy_and_survive_save_and_load(movie_catalog_path, small_movies, tmp_path):
    engine = Engine.from_config(_config(movie_catalog_path), catalog=small_movies)
    title = small_movies.titles[3]
    assert engine.search(title).x[2:].tolist() == [0.0, 0.0]
    for _ in range(30):
        d = engine.search(title)
        clicked = [d.page_ids[0]] if d.page.size else []
        engine.feedback(Feedback.clicks(d.event_id, clicked))
    rates = engine.success.rates()
    assert rates[0] > 0.9  # BM25 finds an exact title whenever it runs
    assert 0.0 < rates[1] <= 1.0  # the memory learns the title after its first click
    x = engine.search(title).x
    np.testing.assert_allclose(x[2:], rates)
    engine.save(tmp_path / "engine")
    loaded = Engine.load(tmp_path / "engine")
    np.testing.assert_allclose(loaded.success.rates(), rates)
    np.testing.assert_allclose(loaded.search(title).x, x)
    save_state(engine, tmp_path / "state")
    fresh = Engine.load(tmp_path / "engine")
    fresh.success = type(fresh.success)(["bm25", "memory"])
    load_state(fresh, tmp_path / "state")
    np.testing.assert_allclose(fresh.success.rates(), rates)
    for e in (engine, loaded, fresh):
        e.close()


def test_success_feature_of_an_unknown_strategy_is_a_config_error(movie_catalog_path, small_movies):
    cfg = _config(movie_catalog_path, context_features=["bias", "success_dense"])
    with pytest.raises(ConfigError, match="Context feature 'success_dense' names no strategy of this engine; "
                                          "strategies: bm25, memory"):
        Engine.from_config(cfg, catalog=small_movies)
