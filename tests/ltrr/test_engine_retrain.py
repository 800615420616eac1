"""Online retraining of strategies in the engine: ``strategies[].retrain_every`` rebuilds the XMR
model from accumulated clicks and swaps it in while the old one keeps serving."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from ltrr.config import parse_config
from ltrr.engine import Engine
from ltrr.types import Feedback
from strategies.xmr import XRLinear

FIELDS = ["title", "directors", "cast", "genres", "year"]


def _config(path, retrain_every: int):
    return parse_config({
        "seed": 5,
        "catalog": {"path": str(path), "text_fields": FIELDS, "limit": 800},
        "strategies": [
            {"name": "bm25", "depths": [0, 50]},
            # xmr knows titles only: it cannot map a director's name to that director's film
            {"name": "xmr", "depths": [0, 50], "retrain_every": retrain_every,
             "params": {"text_fields": ["title"], "seed": 0}},
        ],
        "policy": {"type": "fixed", "budget": 100},
        "ranker": {"retrain_every": 0},
    }, "test")




@pytest.fixture()
def engine(movie_catalog_path, small_movies):
    e = Engine.from_config(_config(movie_catalog_path, retrain_every=3), catalog=small_movies)
    yield e
    e.close()


def test_config_default_never_retrains(movie_catalog_path):
    cfg = _config(movie_catalog_path, 0)
    assert cfg.strategies[0].retrain_every == 0
    with pytest.raises(ValueError, match="retrain_every"):
        _config(movie_catalog_path, -1)


def _click_until_retrained(engine, small_movies, director):
    """Three clicks on a film xmr cannot find for the query; returns the new xmr model."""
    query, target = director
    item = small_movies.ids[target]
    old = engine.strategies["xmr"]
    assert target not in old.retrieve([query], 50).ids[0]  # titles alone cannot match the name
    for step in range(3):
        d = engine.search(query, k=100, ts=10.0 + step)
        assert item in d.page_ids  # bm25 finds it through the directors field
        # xmr did not contribute the film before retraining
        col = d.candidates.strategies.index("xmr")
        row = int(np.flatnonzero(d.candidates.items == target)[0])
        assert not d.candidates.found[row, col]
        engine.feedback(Feedback.clicks(d.event_id, [item], ts=11.0 + step))
        if step < 2:
            assert engine.strategies["xmr"] is old and old.n_observed == step + 1
    new = engine.strategies["xmr"]
    assert new is not old
    assert new.n_pairs_ == 3 and new.n_observed == 0
    d = engine.search(query, k=100, ts=20.0)
    col = d.candidates.strategies.index("xmr")
    xmr_items = d.candidates.items[d.candidates.found[:, col]]
    assert target in xmr_items
    assert new.retrieve([query], 1).ids[0, 0] == target
    # the old model is untouched (it served until the swap)
    assert target not in old.retrieve([query], 50).ids[0]
    return new


def test_after_n_clicks_the_engine_serves_a_new_xmr_model_that_learned_them(engine, small_movies,
                                                                          single_film_director):
    assert _click_until_retrained(engine, small_movies, single_film_director) is engine.strategies["xmr"]


def test_a_saved_engine_keeps_the_retrained_model(engine, small_movies, tmp_path, single_film_director):
    query, target = single_film_director
    _click_until_retrained(engine, small_movies, single_film_director)
    engine.save(tmp_path / "eng")
    back = Engine.load(tmp_path / "eng")
    try:
        assert back.strategies["xmr"].n_pairs_ == 3
        assert back.strategies["xmr"].retrieve([query], 1).ids[0, 0] == target
    finally:
        back.close()


def test_old_model_keeps_serving_while_the_new_one_trains(engine, small_movies, monkeypatch, single_film_director):
    query, target = single_film_director
    item = small_movies.ids[target]
    old = engine.strategies["xmr"]
    real_fit = XRLinear.fit_pairs
    started, release = threading.Event(), threading.Event()

    def slow_fit(self, *args, **kwargs):  # training that takes until the test releases it
        started.set()
        assert release.wait(30)
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(XRLinear, "fit_pairs", slow_fit)
    for step in range(2):
        d = engine.search(query, k=100, ts=float(step))
        engine.feedback(Feedback.clicks(d.event_id, [item], ts=float(step) + 0.5))
    d = engine.search(query, k=100, ts=5.0)
    worker = threading.Thread(target=engine.feedback, args=(Feedback.clicks(d.event_id, [item], ts=6.0),))
    worker.start()
    assert started.wait(30)
    # training is under way: searches are answered (by the old model) and feedback still lands
    during = engine.search(query, k=100, ts=7.0)
    assert engine.strategies["xmr"] is old
    assert engine.learner.retrain_strategies() == []  # no second build of the same strategy meanwhile
    engine.feedback(Feedback.clicks(during.event_id, [item], ts=7.5))
    release.set()
    worker.join(60)
    assert not worker.is_alive()
    new = engine.strategies["xmr"]
    assert new is not old
    assert new.n_pairs_ == 3
    # the click that arrived while training was handed over to the new model's buffer
    assert new.n_observed == 1
