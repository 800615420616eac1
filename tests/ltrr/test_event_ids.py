"""Event ids stay unique across loads and processes (a seeded stream restarting at load once
made the second load's first search fail with a UNIQUE constraint error)."""

import uuid

import pytest

from ltrr.config import parse_config
from ltrr.engine import Engine
from ltrr.event_ids import EventIds


def _config(path, events_path, event_ids="random"):
    return parse_config({
        "seed": 3, "catalog": {"path": str(path), "limit": 800},
        "strategies": [{"name": "bm25", "depths": [10]}], "policy": {"type": "fixed"},
        "store": {"events_path": str(events_path), "event_ids": event_ids},
    }, "test")


@pytest.mark.parametrize("event_ids", ["random", "seeded"])
def test_an_engine_loaded_twice_on_one_event_log_logs_new_ids(movie_catalog_path, small_movies, tmp_path,
                                                              event_ids):
    events = tmp_path / "events.sqlite"
    engine = Engine.from_config(_config(movie_catalog_path, events, event_ids), catalog=small_movies)
    engine.save(tmp_path / "eng")
    first = engine.search("alien", ts=1.0).event_id
    engine.close()
    ids = {first}
    for i in range(2):  # each load continues the same log: no id may repeat
        loaded = Engine.load(tmp_path / "eng", events_path=str(events))
        ids.add(loaded.search("alien", ts=2.0 + i).event_id)
        loaded.close()
    assert len(ids) == 3
    assert all(uuid.UUID(i).version == 4 for i in ids)


def test_seeded_ids_repeat_only_for_the_same_seed_and_log_length():
    a, b, c = EventIds([1, 2, 0]), EventIds([1, 2, 0]), EventIds([1, 2, 5])
    seq_a = [a.next() for _ in range(3)]
    assert seq_a == [b.next() for _ in range(3)]
    assert not set(seq_a) & {c.next() for _ in range(3)}
    assert EventIds().next() != EventIds().next()
