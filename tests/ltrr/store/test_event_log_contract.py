"""The event-log contract, checked on both stores: SQLite (embedded) and a real PostgreSQL server.

Same promises everywhere: idempotent feedback per (event, item, kind), credit once, journal
numbers in commit order without gaps (a concurrent reader never skips an entry), retention that
never deletes journal entries a snapshot still needs, refused entries recorded with a reason.
"""

from __future__ import annotations

import threading
import time

import pytest

from ltrr.config import DATA_DIR, parse_config
from ltrr.engine import Engine
from ltrr.store.events import EventLog
from ltrr.store.log_contract import EventStore, open_event_log
from ltrr.types import FeedbackEvent

CONFIG = {
    "seed": 0,
    "catalog": {"path": str(DATA_DIR / "movies" / "catalog.jsonl"), "limit": 200,
                "text_fields": ["title", "directors", "cast", "genres", "year"]},
    "strategies": [{"name": "bm25", "depths": [10, 20]}],
    "policy": {"type": "epsilon_greedy", "budget": 100},
    "ranker": {"retrain_every": 0},
}


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path) -> dict:
    if request.param == "sqlite":
        return {"backend": "sqlite", "events_path": str(tmp_path / "events.sqlite")}
    return {"backend": "postgres", "dsn": request.getfixturevalue("pg_dsn")}


@pytest.fixture
def engine(store):
    e = Engine.from_config(parse_config({**CONFIG, "store": store}, "<test>"))
    yield e
    e.close()


def test_both_stores_implement_the_declared_contract(engine, store):
    assert isinstance(engine.events, EventStore) and engine.events.backend == store["backend"]
    assert issubclass(EventLog, EventStore)


def test_feedback_is_idempotent_credited_once_and_journaled_in_order(engine):
    log = engine.events
    d = engine.search("drama", ts=100.0)
    a, b = d.page_ids[0], d.page_ids[1]
    e1, dup1 = log.record_feedback(d.event_id, [FeedbackEvent(a), FeedbackEvent(b, "dwell", 1, 30.0)], 101.0,
                                   synchronous="FULL")
    assert e1.seq == 1 and e1.first and dup1 == 0 and [e.item for e in e1.events] == [a, b]
    assert log.record_feedback(d.event_id, [FeedbackEvent(a)], 102.0) == (None, 1)
    e3, dup3 = log.record_feedback(d.event_id, [FeedbackEvent(a), FeedbackEvent(b)], 103.0)
    assert e3.seq == 2 and not e3.first and dup3 == 1 and [e.item for e in e3.events] == [b]
    assert log.journal_head() == 2
    replay = log.journal_since(0)
    assert [(j.seq, j.first, j.ts) for j in replay] == [(1, True, 101.0), (2, False, 103.0)]
    assert replay[0].events[1] == FeedbackEvent(b, "dwell", 1, 30.0)
    assert log.journal_since(1) == replay[1:]
    assert sorted(log.feedback_for(d.event_id)) == sorted([(a, "click", 1.0), (b, "dwell", 30.0), (b, "click", 1.0)])
    assert log.counts() == {"events": 1, "feedback": 3}
    got = log.get(d.event_id)
    assert got.credited and got.page_ids == d.page_ids and got.x.shape == d.x.shape
    assert (got.x == d.x).all() and got.plan.depths == d.plan.depths
    with pytest.raises(ValueError, match="synchronous must be 'NORMAL' or 'FULL'; got 'OFF'"):
        log.record_feedback(d.event_id, [], 104.0, synchronous="OFF")


def test_concurrent_feedback_counts_once_and_a_concurrent_reader_never_skips_an_entry(engine, store):
    """8 writer threads (own connections in PostgreSQL) send the same clicks for 24 events, each
    twice; a reader tails the journal meanwhile as the learner does."""
    decisions = [engine.search(q, ts=float(i)) for i, q in enumerate(["drama", "war", "crime"] * 8)]
    writer_log = engine.events if store["backend"] == "sqlite" else open_event_log(
        parse_config({**CONFIG, "store": store}, "<t>").store)
    seen: list[int] = []
    done = threading.Event()

    def reader() -> None:
        last = 0
        while True:
            finished = done.is_set()
            for entry in engine.events.journal_since(last, 7):
                seen.append(entry.seq)
                last = entry.seq
            if finished and last == engine.events.journal_head():
                return
            time.sleep(0.001)

    def writer(w: int) -> None:
        for rep in range(2):
            for i, d in enumerate(decisions):
                items = [FeedbackEvent(d.page_ids[(i + w) % 2]), FeedbackEvent(d.page_ids[2])]
                writer_log.record_feedback(d.event_id, items if (w + rep) % 3 else items[::-1], 200.0 + i)

    t_read = threading.Thread(target=reader)
    t_read.start()
    writers = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    t_read.join(60)
    head = engine.events.journal_head()
    assert seen == list(range(1, head + 1)), "the journal reader skipped or repeated an entry"
    entries = engine.events.journal_since(0, 10_000)
    assert sum(e.first for e in entries) == len(decisions)  # each event credited exactly once
    stored = [(e.event_id, ev.item) for e in entries for ev in e.events]
    assert len(stored) == len(set(stored)) == 3 * len(decisions)  # every click journaled once
    assert engine.events.counts()["feedback"] == 3 * len(decisions)
    if writer_log is not engine.events:
        writer_log.close()


def test_retention_keeps_what_a_snapshot_still_needs(engine):
    log = engine.events
    ds = [engine.search("drama", ts=float(t)) for t in range(10)]
    for d in ds:
        log.record_feedback(d.event_id, [FeedbackEvent(d.page_ids[0])], d.ts + 0.5)
    assert log.journal_head() == 10
    # age: decisions before t=4 go, with their feedback; journal entries only up to seq 2
    res = log.prune(older_than=4.0, max_events=None, keep_journal_after=2)
    assert (res.events, res.feedback, res.journal) == (4, 4, 2)
    assert [e.seq for e in log.journal_since(0)] == [3, 4, 5, 6, 7, 8, 9, 10]
    assert log.get(ds[3].event_id) is None and log.get(ds[4].event_id) is not None
    # size: keep the newest decision, but none still inside the feedback window (logged at t >= 7)
    res = log.prune(older_than=None, max_events=1, keep_journal_after=10, keep_since=7.0)
    assert (res.events, res.feedback) == (3, 3) and log.counts() == {"events": 3, "feedback": 3}
    assert log.get(ds[6].event_id) is None and log.get(ds[7].event_id) is not None
    assert [e.seq for e in log.journal_since(0)] == [8, 9, 10]
    # the journal head survives deleting every entry
    log.prune(older_than=1e9, max_events=None, keep_journal_after=10)
    assert log.counts()["events"] == 0 and log.journal_since(0) == [] and log.journal_head() == 10
    d = engine.search("war", ts=20.0)
    entry, _ = log.record_feedback(d.event_id, [], 21.0)
    assert entry.seq == 11  # numbers are never reused


def test_refused_entries_are_recorded_with_their_reason(engine):
    engine.events.refuse_journal(3, "context has 13 features, the policy 10")
    engine.events.refuse_journal(5, "other")
    assert engine.events.journal_refusals() == [(5, "other"), (3, "context has 13 features, the policy 10")]


def test_postgres_snapshots_store_each_file_once_and_fetch_only_what_changed(pg_dsn, tmp_path):
    from ltrr.store.postgres import AdvisoryLock, PostgresSnapshots, connect_pool

    pool = connect_pool(pg_dsn, 2)
    snaps = PostgresSnapshots(pool, keep=2)
    lock = AdvisoryLock(pg_dsn)
    assert lock.try_acquire()
    src = tmp_path / "snap"
    (src / "policy").mkdir(parents=True)
    (src / "policy" / "a.npy").write_bytes(b"A" * 1000)
    (src / "big.bin").write_bytes(b"B" * 100_000)
    meta = {"seq": 5, "fingerprint": "f1", "written_at": 1.0}
    s1 = snaps.publish(src, meta, lock.connection())
    (src / "policy" / "a.npy").write_bytes(b"C" * 1000)  # only this file changes
    s2 = snaps.publish(src, {**meta, "seq": 9}, lock.connection())
    with pool.connection() as conn:
        assert conn.execute("SELECT COUNT(*) FROM ltrr_blobs").fetchone()[0] == 3
    assert snaps.latest()["id"] == s2 and snaps.latest()["seq"] == 9
    got = snaps.fetch(s1, tmp_path / "one")
    assert got["seq"] == 5 and (tmp_path / "one" / "policy" / "a.npy").read_bytes() == b"A" * 1000
    got = snaps.fetch(s2, tmp_path / "two", cache=tmp_path / "one")
    assert (tmp_path / "two" / "policy" / "a.npy").read_bytes() == b"C" * 1000
    assert (tmp_path / "two" / "big.bin").read_bytes() == b"B" * 100_000
    s3 = snaps.publish(src, {**meta, "seq": 10}, lock.connection())  # keep=2: s1 and its 'A' file go
    with pool.connection() as conn:
        assert conn.execute("SELECT COUNT(*) FROM ltrr_blobs").fetchone()[0] == 2
    with pytest.raises(LookupError, match=f"snapshot {s1} is no longer stored"):
        snaps.fetch(s1, tmp_path / "gone")
    assert snaps.latest()["id"] == s3
    snaps.request("reload", "fp2")
    assert snaps.take_request("reload") == "fp2" and snaps.take_request("reload") is None
    lock.release()
    pool.close()


def test_the_advisory_lock_has_one_holder_and_is_freed_when_its_connection_ends(pg_dsn):
    import psycopg

    from ltrr.store.postgres import AdvisoryLock

    a, b = AdvisoryLock(pg_dsn), AdvisoryLock(pg_dsn)
    assert a.try_acquire() and a.held()
    assert not b.try_acquire() and not b.held()
    # the server ends a's session (as when its process is killed): a notices, b gets the lock
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        pid = a.connection().info.backend_pid
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    deadline = time.monotonic() + 10
    while a.held() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not a.held()
    assert b.try_acquire() and b.held()
    b.release()
