"""A retrained XR-Linear model is learned state: it is written to the serving snapshot, survives a
restore, and reaches a follower (it once stayed out of every snapshot: restored engines and
followers had 0 click pairs and missed the clicked film)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ltrr.config import DATA_DIR, parse_config
from ltrr.engine import Engine
from ltrr.serve.state import ServeSettings, ServingState
from ltrr.store.engine_dir import load_state, save_state
from ltrr.types import Feedback

FIELDS = ["title", "directors", "cast", "genres", "year"]


def _config():
    return parse_config({
        "seed": 5,
        "catalog": {"path": str(DATA_DIR / "movies" / "catalog.jsonl"), "text_fields": FIELDS, "limit": 800},
        "strategies": [
            {"name": "bm25", "depths": [50]},
            # xmr knows titles only: a director's name reaches that director's film only after clicks
            {"name": "xmr", "depths": [50], "retrain_every": 3, "params": {"text_fields": ["title"], "seed": 0}},
        ],
        "policy": {"type": "fixed", "budget": 100},
        "ranker": {"retrain_every": 0},
    }, "test")




def _xmr_finds(engine: Engine, query: str, target: int) -> bool:
    return target in engine.strategies["xmr"].retrieve([query], 50).ids[0]


@pytest.fixture()
def engine_dir(tmp_path):
    engine = Engine.from_config(_config())
    engine.save(tmp_path / "engine")
    engine.close()
    return tmp_path / "engine"


def test_snapshot_restore_keeps_the_retrained_model_and_its_click_buffer(engine_dir, tmp_path, single_film_director):
    engine = Engine.load(engine_dir)
    query, target = single_film_director  # the engine's catalog is the same first 800 films
    assert not _xmr_finds(engine, query, target)
    for step in range(4):  # 3 clicks retrain; the 4th waits in the new model's buffer
        d = engine.search(query, k=100, ts=float(step))
        engine.feedback(Feedback.clicks(d.event_id, [engine.catalog.ids[target]], ts=step + 0.5))
    assert _xmr_finds(engine, query, target) and engine.strategies["xmr"].n_observed == 1
    save_state(engine, tmp_path / "snap")
    restored = Engine.load(engine_dir)
    assert not _xmr_finds(restored, query, target)
    load_state(restored, tmp_path / "snap")
    assert _xmr_finds(restored, query, target)
    assert restored.strategies["xmr"].n_pairs_ == 3 and restored.strategies["xmr"].n_observed == 1
    for e in (engine, restored):
        e.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_follower_serves_the_model_the_learner_retrained(engine_dir, tmp_path, backend, request,
                                                          single_film_director):
    """SQLite: two workers on one state directory. PostgreSQL: two replicas, each with its own
    state directory, sharing only the database (the model travels as a published snapshot)."""
    dsn = request.getfixturevalue("pg_dsn") if backend == "postgres" else None

    def settings(name: str) -> ServeSettings:
        return ServeSettings(engine_dir=str(engine_dir), state_dir=str(tmp_path / (name if dsn else "state")),
                             poll_s=0.05, snapshot_every_s=0.05, dsn=dsn)

    learner, follower = ServingState(settings("a")), ServingState(settings("b"))
    learner.start()
    follower.start()
    try:
        assert learner.is_learner and not follower.is_learner
        query, target = single_film_director
        item = learner.engine.catalog.ids[target]
        assert not _xmr_finds(follower.engine, query, target)
        for step in range(3):  # feedback arrives at the follower too: it only stores it
            node = follower if step % 2 else learner
            d = node.engine.search(query, k=100)
            node.feedback(Feedback.clicks(d.event_id, [item]))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not _xmr_finds(follower.engine, query, target):
            time.sleep(0.1)
        assert _xmr_finds(learner.engine, query, target)
        assert _xmr_finds(follower.engine, query, target), "the retrained model never reached the follower"
        d = follower.engine.search(query, k=100)
        col = d.candidates.strategies.index("xmr")
        assert target in d.candidates.items[d.candidates.found[:, col]]
        assert np.array_equal(follower.engine.strategies["xmr"].pair_rows_, [target] * 3)
    finally:
        follower.stop()
        learner.stop()
