"""The event log, feedback journal and published state snapshots in PostgreSQL (psycopg 3).

:class:`PostgresEventLog` implements :class:`~ltrr.store.log_contract.EventStore` with the same
semantics as the SQLite log, for serving replicas on several machines:

* a decision is one autocommit ``INSERT``; with ``synchronous = "NORMAL"`` it is committed with
  ``synchronous_commit = off`` (it survives any crash of the replica, and a crash of the database
  server except its last few hundred milliseconds; "FULL" waits for the WAL flush);
* feedback is one transaction that inserts the rows (``ON CONFLICT DO NOTHING`` on the (event,
  item, kind) key, rows in key order so two calls never deadlock), credits the event
  (``UPDATE ... WHERE NOT credited``: once, whoever commits first) and appends the journal entry,
  always with ``synchronous_commit = on``: an acknowledged feedback is on the database's disk;
* journal sequence numbers come from one counter row updated in the same transaction: its row
  lock is held until commit, so numbers are handed out in commit order with no gaps — a learner
  that read entry ``n`` has seen every entry before it (a ``BIGSERIAL`` would not promise this:
  two transactions may commit in the other order than they drew their numbers).

:class:`PostgresSnapshots` stores the learner's state snapshots (every file of a
:func:`~ltrr.store.engine_dir.save_state` directory) content-addressed by SHA-256, so a file that
did not change (an XR-Linear model between retrains) is stored and downloaded once.
:class:`AdvisoryLock` is the learner election: a session-level ``pg_try_advisory_lock`` on a
dedicated connection, released by the server when that connection ends (process killed, machine
gone: TCP keepalives bound the wait).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from ltrr.store.log_contract import (
    EventStore,
    JournalEntry,
    LoggedEvent,
    PruneResult,
    check_synchronous,
    decision_row,
    decode_event,
    journal_entry,
    journal_payload,
)
from ltrr.store.persist import sha256_file
from ltrr.types import Decision, FeedbackEvent

#: TCP keepalives: a learner whose machine vanished loses its lock within ~idle + interval x count s
KEEPALIVES: dict[str, Any] = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3,
              "connect_timeout": 10}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ltrr_events (
    seq BIGSERIAL PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    ts DOUBLE PRECISION NOT NULL,
    query TEXT NOT NULL,
    context TEXT NOT NULL,
    plan TEXT NOT NULL,
    page TEXT NOT NULL,
    model_versions TEXT NOT NULL,
    arrays BYTEA NOT NULL,
    credited BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX IF NOT EXISTS ltrr_events_ts ON ltrr_events (ts);
CREATE TABLE IF NOT EXISTS ltrr_feedback (
    event_id TEXT NOT NULL,
    item TEXT NOT NULL,
    kind TEXT NOT NULL,
    position INTEGER,
    value DOUBLE PRECISION NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (event_id, item, kind)
);
CREATE TABLE IF NOT EXISTS ltrr_journal (
    seq BIGINT PRIMARY KEY,
    event_id TEXT NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    first BOOLEAN NOT NULL,
    events TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ltrr_journal_event ON ltrr_journal (event_id);
CREATE TABLE IF NOT EXISTS ltrr_journal_refused (
    seq BIGINT PRIMARY KEY,
    ts DOUBLE PRECISION NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ltrr_counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
INSERT INTO ltrr_counters (name, value) VALUES ('journal', 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS ltrr_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ltrr_blobs (sha256 TEXT PRIMARY KEY, data BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS ltrr_snapshots (
    id BIGSERIAL PRIMARY KEY,
    seq BIGINT NOT NULL,
    fingerprint TEXT NOT NULL,
    written_at DOUBLE PRECISION NOT NULL,
    files TEXT NOT NULL,
    meta TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ltrr_requests (name TEXT PRIMARY KEY, value TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL);
"""

_EVENT_COLS = "seq, event_id, ts, query, context, plan, page, model_versions, arrays, credited"
#: one key for every ltrr schema: CREATE TABLE IF NOT EXISTS is not safe against itself
_SCHEMA_LOCK = 0x17_5C_4E_4D
#: the learner election's advisory lock key (one learner per database)
LEARNER_LOCK = 0x17_1EA2_4E


def _one(cur: psycopg.Cursor) -> tuple[Any, ...]:
    """The one row a statement returns (an aggregate, a RETURNING, a counter)."""
    row = cur.fetchone()
    if row is None:
        raise LookupError("the statement returned no row")
    return row


def connect_pool(dsn: str, size: int, *, synchronous: str = "NORMAL", name: str = "ltrr") -> ConnectionPool:
    """A pool of autocommit connections; decisions commit asynchronously under "NORMAL"."""

    def configure(conn: psycopg.Connection) -> None:
        if synchronous == "NORMAL":
            conn.execute("SET synchronous_commit TO off")

    return ConnectionPool(dsn, min_size=1, max_size=size, kwargs={"autocommit": True, **KEEPALIVES},
                          configure=configure, name=name, open=True, timeout=30)


def ensure_schema(pool: ConnectionPool) -> None:
    with pool.connection() as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        conn.execute(_SCHEMA)


class PostgresEventLog(EventStore):
    """Decisions, feedback and the feedback journal in PostgreSQL (see the module docstring)."""

    backend = "postgres"

    def __init__(self, dsn: str, *, synchronous: str = "NORMAL", pool_size: int = 4):
        check_synchronous(synchronous)
        self.dsn = dsn
        self.synchronous = synchronous
        self.pool = connect_pool(dsn, pool_size, synchronous=synchronous, name="ltrr-events")
        ensure_schema(self.pool)

    # ------------------------------------------------------------------ decisions
    def append(self, d: Decision) -> None:
        with self.pool.connection() as conn:
            conn.execute("INSERT INTO ltrr_events (event_id, ts, query, context, plan, page, model_versions, arrays)"
                         " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", decision_row(d))

    def get(self, event_id: str) -> LoggedEvent | None:
        with self.pool.connection() as conn:
            row = conn.execute(f"SELECT {_EVENT_COLS} FROM ltrr_events WHERE event_id = %s", (event_id,)).fetchone()
        return None if row is None else decode_event(row)

    def last_seq(self) -> int:
        with self.pool.connection() as conn:
            return int(_one(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM ltrr_events"))[0])

    def iter_events(self, after_seq: int = 0, batch: int = 1000) -> Iterator[tuple[LoggedEvent, dict[str, float]]]:
        last = int(after_seq)
        while True:
            with self.pool.connection() as conn:
                rows = conn.execute(f"SELECT {_EVENT_COLS} FROM ltrr_events WHERE seq > %s ORDER BY seq LIMIT %s",
                                    (last, int(batch))).fetchall()
                fb = self._feedback_sums(conn, [r[1] for r in rows])
            if not rows:
                return
            for row in rows:
                yield decode_event(row), fb[row[1]]
            last = int(rows[-1][0])

    @staticmethod
    def _feedback_sums(conn: psycopg.Connection, ids: list[str]) -> dict[str, dict[str, float]]:
        fb: dict[str, dict[str, float]] = {i: {} for i in ids}
        if ids:
            for eid, item, value in conn.execute(
                    "SELECT event_id, item, SUM(value) FROM ltrr_feedback WHERE event_id = ANY(%s)"
                    " GROUP BY event_id, item", (ids,)):
                fb[eid][item] = float(value)
        return fb

    def delete_after(self, seq: int) -> int:
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("DELETE FROM ltrr_feedback WHERE event_id IN (SELECT event_id FROM ltrr_events WHERE seq > %s)",
                         (int(seq),))
            conn.execute("DELETE FROM ltrr_journal WHERE event_id IN (SELECT event_id FROM ltrr_events WHERE seq > %s)",
                         (int(seq),))
            n = conn.execute("DELETE FROM ltrr_events WHERE seq > %s", (int(seq),)).rowcount
        return int(n)

    # ------------------------------------------------------------------ feedback
    def record_feedback(self, event_id: str, events: Sequence[FeedbackEvent], ts: float, *,
                        synchronous: str | None = None) -> tuple[JournalEntry | None, int]:
        check_synchronous(synchronous)
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SET LOCAL synchronous_commit TO on")  # acknowledged = on the server's disk
            new = self._insert_feedback(conn, event_id, events, ts)
            first = conn.execute("UPDATE ltrr_events SET credited = TRUE WHERE event_id = %s AND NOT credited",
                                 (event_id,)).rowcount == 1
            entry = None
            if new or first:
                # the counter row stays locked until commit: numbers are drawn in commit order
                seq = _one(conn.execute("UPDATE ltrr_counters SET value = value + 1 WHERE name = 'journal'"
                                   " RETURNING value"))[0]
                payload = journal_payload(new)
                conn.execute("INSERT INTO ltrr_journal (seq, event_id, ts, first, events) VALUES (%s, %s, %s, %s, %s)",
                             (seq, event_id, float(ts), first, payload))
                entry = JournalEntry(int(seq), event_id, float(ts), first, tuple(new))
        return entry, len(events) - len(new)

    @staticmethod
    def _insert_feedback(conn: psycopg.Connection, event_id: str, events: Sequence[FeedbackEvent],
                         ts: float) -> list[FeedbackEvent]:
        new: list[FeedbackEvent] = []
        # key order: two concurrent calls for one event lock their rows in the same order
        for ev in sorted(events, key=lambda e: (e.item, e.kind)):
            cur = conn.execute(
                "INSERT INTO ltrr_feedback (event_id, item, kind, position, value, ts) VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING", (event_id, ev.item, ev.kind, ev.position, float(ev.value), float(ts)))
            if cur.rowcount:
                new.append(ev)
        order = {id(e): i for i, e in enumerate(events)}
        return sorted(new, key=lambda e: order[id(e)])  # the caller's order, as SQLite returns it

    def add_feedback(self, event_id: str, events: Sequence[FeedbackEvent], ts: float) -> list[FeedbackEvent]:
        with self.pool.connection() as conn, conn.transaction():
            return self._insert_feedback(conn, event_id, events, ts)

    def feedback_for(self, event_id: str) -> list[tuple[str, str, float]]:
        with self.pool.connection() as conn:
            rows = conn.execute("SELECT item, kind, value FROM ltrr_feedback WHERE event_id = %s", (event_id,)).fetchall()
        return [(i, k, float(v)) for i, k, v in rows]

    def training_events(self, limit: int) -> Iterator[tuple[LoggedEvent, dict[str, float]]]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                f"SELECT {_EVENT_COLS} FROM ltrr_events WHERE event_id IN"
                " (SELECT DISTINCT event_id FROM ltrr_feedback WHERE value > 0) ORDER BY seq DESC LIMIT %s",
                (int(limit),)).fetchall()
            fb = self._feedback_sums(conn, [r[1] for r in rows])
        for row in reversed(rows):
            yield decode_event(row), fb[row[1]]

    # ------------------------------------------------------------------ journal
    def journal_since(self, seq: int, limit: int = 1000) -> list[JournalEntry]:
        with self.pool.connection() as conn:
            rows = conn.execute("SELECT seq, event_id, ts, first, events FROM ltrr_journal WHERE seq > %s"
                                " ORDER BY seq LIMIT %s", (int(seq), int(limit))).fetchall()
        return [journal_entry(*row) for row in rows]

    def journal_head(self) -> int:
        with self.pool.connection() as conn:
            return int(_one(conn.execute("SELECT value FROM ltrr_counters WHERE name = 'journal'"))[0])

    def refuse_journal(self, seq: int, reason: str) -> None:
        with self.pool.connection() as conn:
            conn.execute("INSERT INTO ltrr_journal_refused (seq, ts, reason) VALUES (%s, %s, %s)"
                         " ON CONFLICT (seq) DO UPDATE SET reason = EXCLUDED.reason", (int(seq), time.time(), reason))

    def journal_refusals(self, limit: int = 100) -> list[tuple[int, str]]:
        with self.pool.connection() as conn:
            rows = conn.execute("SELECT seq, reason FROM ltrr_journal_refused ORDER BY seq DESC LIMIT %s",
                                (int(limit),)).fetchall()
        return [(int(s), r) for s, r in rows]

    # ------------------------------------------------------------------ retention
    def prune(self, *, older_than: float | None, max_events: int | None, keep_journal_after: int,
              keep_since: float | None = None) -> PruneResult:
        with self.pool.connection() as conn, conn.transaction():
            cut = 0
            if older_than is not None:
                cut = int(_one(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM ltrr_events WHERE ts < %s",
                                            (float(older_than),)))[0])
            if max_events:
                row = conn.execute("SELECT seq FROM ltrr_events ORDER BY seq DESC LIMIT 1 OFFSET %s",
                                   (int(max_events),)).fetchone()
                by_size = int(row[0]) if row else 0
                if keep_since is not None:  # never a decision that may still get feedback
                    young = _one(conn.execute("SELECT MIN(seq) FROM ltrr_events WHERE ts >= %s",
                                              (float(keep_since),)))[0]
                    by_size = min(by_size, int(young) - 1) if young is not None else by_size
                cut = max(cut, by_size)
            n_fb = conn.execute("DELETE FROM ltrr_feedback WHERE event_id IN"
                                " (SELECT event_id FROM ltrr_events WHERE seq <= %s)", (cut,)).rowcount
            n_j = conn.execute(
                "DELETE FROM ltrr_journal j WHERE j.seq <= %s AND (j.ts < %s OR NOT EXISTS"
                " (SELECT 1 FROM ltrr_events e WHERE e.event_id = j.event_id AND e.seq > %s))",
                (int(keep_journal_after), float(older_than) if older_than is not None else float("-inf"), cut),
            ).rowcount
            n_ev = conn.execute("DELETE FROM ltrr_events WHERE seq <= %s", (cut,)).rowcount
        return PruneResult(int(n_ev), int(n_fb), int(n_j))

    # ------------------------------------------------------------------ meta
    def put_meta(self, key: str, value: str) -> None:
        with self.pool.connection() as conn:
            conn.execute("INSERT INTO ltrr_meta (key, value) VALUES (%s, %s)"
                         " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", (key, value))

    def get_meta(self, key: str) -> str | None:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT value FROM ltrr_meta WHERE key = %s", (key,)).fetchone()
        return None if row is None else row[0]

    def counts(self) -> dict[str, int]:
        with self.pool.connection() as conn:
            n_ev = _one(conn.execute("SELECT COUNT(*) FROM ltrr_events"))[0]
            n_fb = _one(conn.execute("SELECT COUNT(*) FROM ltrr_feedback"))[0]
        return {"events": int(n_ev), "feedback": int(n_fb)}

    def close(self) -> None:
        self.pool.close()


# ---------------------------------------------------------------------- coordination of replicas
class AdvisoryLock:
    """A session-level advisory lock held on its own connection (the learner election).

    ``try_acquire`` is non-blocking and reuses one connection between attempts. ``held`` pings
    that connection: a learner whose connection broke has lost the lock (the server released
    it) and must stop acting as the learner.
    """

    def __init__(self, dsn: str, key: int = LEARNER_LOCK):
        self.dsn, self.key = dsn, key
        self._conn: psycopg.Connection | None = None
        self._held = False
        self._lock = threading.Lock()

    def try_acquire(self) -> bool:
        with self._lock:
            if self._held:
                return True
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self.dsn, autocommit=True, **KEEPALIVES)
            try:
                self._held = bool(_one(self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)))[0])
            except psycopg.Error:
                self._close()
                raise
            return self._held

    def held(self) -> bool:
        with self._lock:
            if not self._held or self._conn is None:
                return False
            try:
                self._conn.execute("SELECT 1")
                return True
            except psycopg.Error:
                self._close()
                return False

    def connection(self) -> psycopg.Connection | None:
        """The lock's connection while the lock is held: writes made through it fail once the
        lock is lost (fencing)."""
        return self._conn if self._held else None

    def _close(self) -> None:
        self._held = False
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def release(self) -> None:
        with self._lock:
            self._close()


class PostgresSnapshots:
    """Published state snapshots: a row per snapshot naming its files by SHA-256, file contents
    stored once each (see the module docstring)."""

    def __init__(self, pool: ConnectionPool, keep: int = 3):
        self.pool, self.keep = pool, keep
        ensure_schema(pool)

    def latest(self) -> dict[str, Any] | None:
        """``{"id", "seq", "fingerprint", "written_at", "meta"}`` of the newest snapshot, or None."""
        with self.pool.connection() as conn:
            row = conn.execute("SELECT id, seq, fingerprint, written_at, meta FROM ltrr_snapshots"
                               " ORDER BY id DESC LIMIT 1").fetchone()
        if row is None:
            return None
        return {"id": int(row[0]), "seq": int(row[1]), "fingerprint": row[2], "written_at": float(row[3]),
                "meta": json.loads(row[4])}

    def publish(self, directory: Path, meta: dict[str, Any], conn: psycopg.Connection) -> int:
        """Store every file under ``directory`` and a snapshot row, in one transaction on
        ``conn`` (the learner lock's connection: a deposed learner cannot publish). Returns its id."""
        files: dict[str, str] = {}
        blobs: dict[str, Path] = {}
        for dirpath, _dirs, names in os.walk(directory):
            for name in sorted(names):
                p = Path(dirpath) / name
                digest = sha256_file(p)
                files[p.relative_to(directory).as_posix()] = digest
                blobs[digest] = p
        with conn.transaction():
            have = {r[0] for r in conn.execute("SELECT sha256 FROM ltrr_blobs WHERE sha256 = ANY(%s)",
                                                (list(blobs),))}
            for digest, p in blobs.items():
                if digest not in have:
                    conn.execute("INSERT INTO ltrr_blobs (sha256, data) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                                 (digest, p.read_bytes()))
            sid = _one(conn.execute(
                "INSERT INTO ltrr_snapshots (seq, fingerprint, written_at, files, meta) VALUES (%s, %s, %s, %s, %s)"
                " RETURNING id", (int(meta["seq"]), str(meta["fingerprint"]), float(meta["written_at"]),
                                  json.dumps(files, sort_keys=True), json.dumps(meta))))[0]
            # keep the newest few; drop the files no kept snapshot names
            conn.execute("DELETE FROM ltrr_snapshots WHERE id <= %s", (int(sid) - self.keep,))
            kept: set[str] = set()
            for (f,) in conn.execute("SELECT files FROM ltrr_snapshots"):
                kept.update(json.loads(f).values())
            conn.execute("DELETE FROM ltrr_blobs WHERE NOT (sha256 = ANY(%s))", (sorted(kept),))
        return int(sid)

    def fetch(self, snapshot_id: int, dest: Path, cache: Path | None = None) -> dict[str, Any]:
        """Write snapshot ``snapshot_id``'s files under ``dest`` (which must not exist); files
        found in ``cache`` (a previous download, by relative path and checksum) are copied from
        it instead of downloaded. Returns its meta."""
        with self.pool.connection() as conn:
            row = conn.execute("SELECT files, meta FROM ltrr_snapshots WHERE id = %s", (int(snapshot_id),)).fetchone()
            if row is None:
                raise LookupError(f"snapshot {snapshot_id} is no longer stored (a newer one replaced it)")
            files: dict[str, str] = json.loads(row[0])
            need = set()
            for rel, digest in files.items():
                if cache is not None and (cache / rel).is_file() and sha256_file(cache / rel) == digest:
                    continue
                need.add(digest)
            data: dict[str, bytes] = dict(conn.execute("SELECT sha256, data FROM ltrr_blobs WHERE sha256 = ANY(%s)",
                                     (sorted(need),)).fetchall()) if need else {}
        for rel, digest in files.items():
            out = dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            if digest in data:
                out.write_bytes(bytes(data[digest]))
            elif cache is not None and (cache / rel).is_file():
                shutil.copyfile(cache / rel, out)
            else:
                raise LookupError(f"snapshot {snapshot_id}: file {rel} is no longer stored")
        return dict(json.loads(row[1]))

    def request(self, name: str, value: str) -> None:
        """Leave a request for the learner (e.g. ``reload``), replacing an older one."""
        with self.pool.connection() as conn:
            conn.execute("INSERT INTO ltrr_requests (name, value, ts) VALUES (%s, %s, %s) ON CONFLICT (name)"
                         " DO UPDATE SET value = EXCLUDED.value, ts = EXCLUDED.ts", (name, value, time.time()))

    def take_request(self, name: str) -> str | None:
        with self.pool.connection() as conn:
            row = conn.execute("DELETE FROM ltrr_requests WHERE name = %s RETURNING value", (name,)).fetchone()
        return None if row is None else row[0]

