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
        "ranker": {"retrain_every": 0}, "reward": {"cost_per_candidate": 0.001, "kind": kind, "latency_weight": 0.0},
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


@pytest.mark.parametrize("kind", ["any_click", "click_dcg"])
def test_split_credit_divides_each_click_among_the_strategies_that_drew_it(movie_catalog_path, small_movies, kind):
    engines = {}
    for credit in ("full", "split"):
        cfg = parse_config({
            "seed": 1, "catalog": {"path": str(movie_catalog_path), "text_fields": FIELDS, "limit": 800},
            "strategies": [{"name": "bm25", "depths": [0, 50]},
                           {"name": "titles", "type": "bm25", "depths": [0, 50], "params": {"text_fields": ["title"]}}],
            "policy": {"type": "fixed", "budget": 100}, "ranker": {"retrain_every": 0},
            "reward": {"cost_per_candidate": 0.001, "kind": kind, "credit": credit},
        }, "test")
        engines[credit] = Engine.from_config(cfg, catalog=small_movies)
    for query in ("love", "war", "night", "man"):  # the first page with both kinds of item
        d = engines["full"].search(query, ts=1.0)
        found = d.candidates.found
        both = set(d.candidates.items[found.all(axis=1)].tolist())
        only_bm25 = set(d.candidates.items[found[:, 0] & ~found[:, 1]].tolist())
        clicked = [r for r in d.page.tolist() if r in both][:1] + [r for r in d.page.tolist() if r in only_bm25][:1]
        if len(clicked) == 2:
            break
    assert len(clicked) == 2
    page = d.page.tolist()
    clicked = np.array(clicked)
    out = {c: e.learner.credit(d.candidates, d.page, d.plan.depths, clicked)[:2] for c, e in engines.items()}
    cost = 0.001 * np.array(d.plan.depths, dtype=float)
    (r_full, s_full), (r_split, s_split) = out["full"], out["split"]
    assert r_full == r_split  # the plan's reward does not depend on the credit rule
    if kind == "click_dcg":
        w = 1 / np.log2(np.arange(2, 12))
        wb, wo = (w[page.index(clicked[0])] / w.sum(), w[page.index(clicked[1])] / w.sum())
        np.testing.assert_allclose(s_full + cost, [wb + wo, wb])
        np.testing.assert_allclose(s_split + cost, [wb / 2 + wo, wb / 2])
    else:
        np.testing.assert_allclose(s_full + cost, [1.0, 1.0])
        np.testing.assert_allclose(s_split + cost, [0.75, 0.25])
    # split credits add up to the plan's gain
    assert (s_split + cost).sum() == pytest.approx(r_split + cost.sum())
    for e in engines.values():
        e.close()
