"""reward.kind: "any_click" (the default) and "click_dcg" (position-weighted clicks)."""

import numpy as np
import pytest

from ltrr.config import parse_config
from ltrr.engine import Engine
from ltrr.errors import ConfigError
from ltrr.types import Feedback

FIELDS = ["title", "directors", "cast", "genres", "year"]


def _engine(path, catalog, kind):
    cfg = parse_config({
        "seed": 1, "catalog": {"path": str(path), "text_fields": FIELDS, "limit": 800},
        "strategies": [{"name": "bm25", "depths": [0, 10, 50]}, {"name": "memory", "depths": [0, 10]}],
        "policy": {"type": "fixed", "params": {"depths": {"bm25": 50}}, "budget": 100},
        "ranker": {"retrain_every": 0}, "reward": {"cost_per_candidate": 0.001, "kind": kind},
    }, "test")
    return Engine.from_config(cfg, catalog=catalog)


@pytest.mark.parametrize("kind", ["any_click", "click_dcg"])
def test_reward_of_clicks_at_positions_1_and_3(movie_catalog_path, small_movies, kind):
    engine = _engine(movie_catalog_path, small_movies, kind)
    d = engine.search("drama", ts=1.0)
    assert len(d.page_ids) == 10
    res = engine.feedback(Feedback.clicks(d.event_id, [d.page_ids[0], d.page_ids[2]], ts=2.0))
    w = 1.0 / np.log2(np.arange(2, 12))
    expected = (1.0 if kind == "any_click" else (w[0] + w[2]) / w.sum()) - 0.001 * 50
    assert res.reward == pytest.approx(expected)
    engine.close()


def test_click_dcg_with_no_click_is_minus_the_cost(movie_catalog_path, small_movies):
    engine = _engine(movie_catalog_path, small_movies, "click_dcg")
    d = engine.search(small_movies.titles[5], ts=1.0)
    assert engine.feedback(Feedback.clicks(d.event_id, [], ts=2.0)).reward == pytest.approx(-0.05)
    engine.close()


def test_unknown_reward_kind_is_a_config_error(movie_catalog_path):
    with pytest.raises(ConfigError, match="kind"):
        parse_config({"strategies": [{"name": "bm25"}], "reward": {"kind": "dwell"}}, "x.toml")
