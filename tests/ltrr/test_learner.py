"""The learner: one path for live feedback, journal entries and replayed records; models built
aside and swapped whole; feedback an engine cannot learn from refused before it is stored."""

from __future__ import annotations

import numpy as np
import pytest

from ltrr.config import parse_config
from ltrr.engine import Engine
from ltrr.errors import IncompatibleEventError
from ltrr.types import Feedback

FIELDS = ["title", "directors", "cast", "genres", "year"]


def _config(path, **over):
    data = {
        "seed": 3,
        "catalog": {"path": str(path), "text_fields": FIELDS, "limit": 800},
        "strategies": [{"name": "bm25", "depths": [0, 10, 50]}, {"name": "memory", "depths": [0, 10]}],
        "policy": {"type": "epsilon_greedy", "params": {"epsilon": 0.2}, "budget": 100},
        "ranker": {"retrain_every": 25, "params": {"n_estimators": 10, "min_data_in_leaf": 5}},
        "store": {"event_ids": "seeded"},
    }
    data.update(over)
    return parse_config(data, "test")


def _policy_state(engine):
    return {k: v.copy() for k, v in engine.policy._state_arrays().items()}


def test_live_feedback_and_the_journal_teach_the_same_state(movie_catalog_path, small_movies):
    """Feedback applied as it arrives, and the same feedback stored first and applied later from
    the journal (the service's learner), leave identical policies, click memories and counters."""
    live = Engine.from_config(_config(movie_catalog_path), catalog=small_movies)
    later = Engine.from_config(_config(movie_catalog_path), catalog=small_movies)
    entries = []
    for i in range(60):
        a = live.search(small_movies.titles[i % 20], ts=float(i))
        later.events.append(a)  # the same decision, served by another worker
        fb = Feedback.clicks(a.event_id, list(a.page_ids[:1]) if i % 3 else [], ts=i + 0.5)
        live.feedback(fb)
        rec = later.learner.record(fb)
        entries.append(rec.entry)
        if i % 7 == 6:  # the learner catches up in batches, as the service's does
            for entry in entries:
                later.learner.apply_journal(entry)
            entries = []
    for entry in entries:
        later.learner.apply_journal(entry)
    for k, v in _policy_state(live).items():
        np.testing.assert_array_equal(v, _policy_state(later)[k])
    assert live.strategies["memory"].counts() == later.strategies["memory"].counts()
    assert live.ranker.is_fitted and later.ranker.is_fitted
    assert live.learner.clock == later.learner.clock
    live.close()
    later.close()


def test_a_retrained_ranker_is_a_new_object_and_the_old_one_is_untouched(movie_catalog_path, small_movies):
    engine = Engine.from_config(_config(movie_catalog_path, ranker={"retrain_every": 0}), catalog=small_movies)
    for i in range(30):
        d = engine.search(small_movies.titles[i], ts=float(i))
        engine.feedback(Feedback.clicks(d.event_id, list(d.page_ids[:1]), ts=i + 0.5))
    old = engine.ranker
    X = engine.search(small_movies.titles[0], ts=99.0).features
    before = old.score(X)
    assert engine.learner.retrain_ranker()
    assert engine.ranker is not old and engine.ranker.is_fitted
    # the model that served (and may still be scoring a request) did not change under it
    assert not old.is_fitted and old.version_ == "prior-rrf"
    np.testing.assert_array_equal(old.score(X), before)
    d = engine.search(small_movies.titles[1], ts=100.0)
    assert d.model_versions["ranker"] == engine.ranker.version_
    engine.close()


def test_feedback_for_a_decision_of_another_engine_is_refused_and_not_stored(movie_catalog_path, small_movies,
                                                                             tmp_path):
    events = str(tmp_path / "events.sqlite")
    old = Engine.from_config(_config(movie_catalog_path, store={"events_path": events}), catalog=small_movies)
    d = old.search("alien", ts=1.0)
    old.close()
    # the engine was replaced by one with another context size (e.g. after /admin/reload)
    new = Engine.from_config(_config(movie_catalog_path, store={"events_path": events},
                                     context_features=["bias", "n_tokens"]), catalog=small_movies)
    with pytest.raises(IncompatibleEventError, match=r"decided with 11 context features; this engine's "
                                                     r"policy uses 2 \(the engine was replaced since\)"):
        new.feedback(Feedback.clicks(d.event_id, list(d.page_ids[:1]), ts=2.0))
    assert new.events.counts()["feedback"] == 0 and new.events.journal_head() == 0
    new.close()
