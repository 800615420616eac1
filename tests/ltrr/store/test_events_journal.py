"""The feedback journal (record once, replay in order) and the raw array blob of the event log."""

from __future__ import annotations

import io

import numpy as np
import pytest

from ltrr.store.events import EventLog, _pack, _unpack
from ltrr.types import FeedbackEvent


def test_raw_blob_round_trips_dtypes_shapes_and_reads_legacy_npz():
    rng = np.random.default_rng(0)
    arrays = {"x": rng.random(5), "items": np.array([3, 1], dtype=np.int64),
              "f": rng.random((7, 3)).astype(np.float32), "empty": np.empty((0, 4), np.float32),
              "scalar": np.array(2.5, np.float32), "fortran": np.arange(12).reshape(3, 4).T}
    back = _unpack(_pack(**arrays))
    assert list(back) == list(arrays)
    for k, a in arrays.items():
        assert back[k].dtype == a.dtype and back[k].shape == a.shape and np.array_equal(back[k], a)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    legacy = _unpack(buf.getvalue())
    assert all(np.array_equal(legacy[k], a) for k, a in arrays.items())
    with pytest.raises(TypeError, match="array 'o' has dtype object; the event log stores numeric arrays only"):
        _pack(o=np.array([{}], dtype=object))


def _log_with_event(tmp_path, event_id: str = "e1") -> EventLog:
    log = EventLog(str(tmp_path / "events.sqlite"))
    log._db.execute("INSERT INTO events (event_id, ts, query, context, plan, page, model_versions, arrays)"
                    " VALUES (?, 0, 'q', '{}', '{}', '[]', '{}', x'')", (event_id,))
    return log


def test_record_feedback_journals_new_events_and_first_credit_once(tmp_path):
    log = _log_with_event(tmp_path)
    click = FeedbackEvent("a")
    e1, dup1 = log.record_feedback("e1", [click, FeedbackEvent("b", "dwell", 2, 30.0)], 10.0, synchronous="FULL")
    assert e1.seq == 1 and e1.first and dup1 == 0 and [e.item for e in e1.events] == ["a", "b"]
    e2, dup2 = log.record_feedback("e1", [click], 11.0)
    assert e2 is None and dup2 == 1
    e3, dup3 = log.record_feedback("e1", [click, FeedbackEvent("c")], 12.0)
    assert e3.seq == 2 and not e3.first and dup3 == 1 and [e.item for e in e3.events] == ["c"]
    assert log.journal_head() == 2
    replay = log.journal_since(0)
    assert [(j.seq, j.first, j.ts) for j in replay] == [(1, True, 10.0), (2, False, 12.0)]
    assert replay[0].events[1] == FeedbackEvent("b", "dwell", 2, 30.0)
    assert log.journal_since(1) == replay[1:]
    assert log.counts()["feedback"] == 3


def test_empty_feedback_is_journaled_once_as_the_events_credit(tmp_path):
    log = _log_with_event(tmp_path)
    entry, _ = log.record_feedback("e1", [], 1.0)
    assert entry.first and entry.events == ()
    assert log.record_feedback("e1", [], 2.0) == (None, 0)
    with pytest.raises(ValueError, match="synchronous must be 'NORMAL' or 'FULL'; got 'OFF'"):
        log.record_feedback("e1", [], 3.0, synchronous="OFF")
    assert log.journal_head() == 1
