"""The decision/feedback event log in SQLite (WAL): the embedded default implementation of
:class:`ltrr.store.log_contract.EventStore`.

Each decision is one row: query, context, context features ``x``, plan with propensities, the
candidate union with provenance, the ranker features of every candidate as served (feature
logging), the page shown and model versions. Feedback rows are keyed by (event id, item, kind),
so the same feedback sent twice is stored once. Arrays are stored as ``.npy`` bytes (no pickle).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

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
    pack_arrays,
    unpack_arrays,
)
from ltrr.types import Decision, FeedbackEvent

__all__ = ["EventLog", "JournalEntry", "LoggedEvent"]

_pack, _unpack = pack_arrays, unpack_arrays  # the names older code and tests use

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    ts REAL NOT NULL,
    query TEXT NOT NULL,
    context TEXT NOT NULL,
    plan TEXT NOT NULL,
    page TEXT NOT NULL,
    model_versions TEXT NOT NULL,
    arrays BLOB NOT NULL,
    credited INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS feedback (
    event_id TEXT NOT NULL,
    item TEXT NOT NULL,
    kind TEXT NOT NULL,
    position INTEGER,
    value REAL NOT NULL,
    ts REAL NOT NULL,
    PRIMARY KEY (event_id, item, kind)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS feedback_ts ON feedback (ts);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS feedback_journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    ts REAL NOT NULL,
    first INTEGER NOT NULL,
    events TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_journal_event ON feedback_journal (event_id);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE TABLE IF NOT EXISTS journal_refused (
    seq INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    reason TEXT NOT NULL
);
"""


class EventLog(EventStore):
    """Append-only decision log with idempotent feedback, in one SQLite file (WAL)."""

    backend = "sqlite"

    def __init__(self, path: str = "", synchronous: str = "NORMAL"):
        self.path = path or ":memory:"
        self.synchronous = synchronous
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def append(self, d: Decision) -> None:
        row = decision_row(d)
        with self._lock:
            self._db.execute(
                "INSERT INTO events (event_id, ts, query, context, plan, page, model_versions, arrays)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)

    def get(self, event_id: str) -> LoggedEvent | None:
        with self._lock:
            row = self._db.execute(
                "SELECT seq, event_id, ts, query, context, plan, page, model_versions, arrays, credited"
                " FROM events WHERE event_id = ?", (event_id,)).fetchone()
        return None if row is None else self._decode(row)

    def _decode(self, row: Sequence[Any]) -> LoggedEvent:
        return decode_event(row)

    def _insert_feedback(self, event_id: str, events: Sequence[FeedbackEvent], ts: float) -> list[FeedbackEvent]:
        """Insert feedback rows inside the caller's transaction; return the ones that were new."""
        new: list[FeedbackEvent] = []
        for ev in events:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO feedback (event_id, item, kind, position, value, ts)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (event_id, ev.item, ev.kind, ev.position, float(ev.value), float(ts)))
            if cur.rowcount:
                new.append(ev)
        return new

    def add_feedback(self, event_id: str, events: Sequence[FeedbackEvent], ts: float) -> list[FeedbackEvent]:
        """Store feedback; returns only the events that were new (idempotent per event/item/kind)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                new = self._insert_feedback(event_id, events, ts)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return new

    def mark_credited(self, event_id: str) -> bool:
        """Mark the event's policy reward as given; False if it already was (credit once)."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE events SET credited = 1 WHERE event_id = ? AND credited = 0", (event_id,))
        return cur.rowcount == 1

    def feedback_for(self, event_id: str) -> list[tuple[str, str, float]]:
        with self._lock:
            return self._db.execute(
                "SELECT item, kind, value FROM feedback WHERE event_id = ?", (event_id,)).fetchall()

    def training_events(self, limit: int) -> Iterator[tuple[LoggedEvent, dict[str, float]]]:
        """The most recent ``limit`` events with at least one click, oldest first, with their
        per-item reward (sum of feedback values)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT e.seq, e.event_id, e.ts, e.query, e.context, e.plan, e.page, e.model_versions,"
                " e.arrays, e.credited FROM events e WHERE e.event_id IN ("
                "  SELECT DISTINCT event_id FROM feedback WHERE value > 0)"
                " ORDER BY e.seq DESC LIMIT ?", (limit,)).fetchall()
            fb: dict[str, dict[str, float]] = {}
            for row in rows:
                fb[row[1]] = {}
            if fb:
                ids = list(fb)
                for start in range(0, len(ids), 500):
                    chunk = ids[start:start + 500]
                    for eid, item, value in self._db.execute(
                            f"SELECT event_id, item, SUM(value) FROM feedback WHERE event_id IN ({','.join('?' * len(chunk))})"
                            " GROUP BY event_id, item", chunk):
                        fb[eid][item] = value
        for row in reversed(rows):
            yield self._decode(row), fb[row[1]]

    def record_feedback(self, event_id: str, events: Sequence[FeedbackEvent], ts: float, *,
                        synchronous: str | None = None) -> tuple[JournalEntry | None, int]:
        """Store feedback, mark the event credited and journal what changed, in one transaction.

        Returns the journal entry (None when the call changed nothing: every event was a
        duplicate and the event was already credited) and the number of duplicate events.
        ``synchronous`` ("NORMAL"/"FULL") overrides the connection's setting for this commit,
        so acknowledged feedback can be fsynced without paying that on every logged search.
        """
        with self._lock:
            check_synchronous(synchronous)
            if synchronous is not None and self.path != ":memory:":
                self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                new = self._insert_feedback(event_id, events, ts)
                first = self._db.execute(
                    "UPDATE events SET credited = 1 WHERE event_id = ? AND credited = 0",
                    (event_id,)).rowcount == 1
                entry = None
                if new or first:
                    payload = journal_payload(new)
                    cur = self._db.execute(
                        "INSERT INTO feedback_journal (event_id, ts, first, events) VALUES (?, ?, ?, ?)",
                        (event_id, float(ts), int(first), payload))
                    entry = JournalEntry(int(cur.lastrowid or 0), event_id, float(ts), first, tuple(new))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            finally:
                if synchronous is not None and self.path != ":memory:":
                    self._db.execute(f"PRAGMA synchronous={self.synchronous}")
        return entry, len(events) - len(new)

    def journal_since(self, seq: int, limit: int = 1000) -> list[JournalEntry]:
        """Journal entries with sequence number > ``seq``, oldest first (at most ``limit``)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, event_id, ts, first, events FROM feedback_journal WHERE seq > ?"
                " ORDER BY seq LIMIT ?", (int(seq), int(limit))).fetchall()
        return [journal_entry(*row) for row in rows]

    def journal_head(self) -> int:
        """The latest journal sequence number (0 when empty)."""
        with self._lock:
            # the sequence counter, not MAX(seq): retention may have deleted every entry
            row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'feedback_journal'").fetchone()
            return int(row[0]) if row else 0

    def iter_events(self, after_seq: int = 0, batch: int = 1000) -> Iterator[tuple[LoggedEvent, dict[str, float]]]:
        """Every decision after ``after_seq`` in log order, with its per-item feedback sums,
        read ``batch`` rows at a time (bounded memory; used to export the log)."""
        last = int(after_seq)
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT seq, event_id, ts, query, context, plan, page, model_versions, arrays, credited"
                    " FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (last, int(batch))).fetchall()
                fb: dict[str, dict[str, float]] = {r[1]: {} for r in rows}
                if rows:
                    for eid, item, value in self._db.execute(
                            "SELECT event_id, item, SUM(value) FROM feedback WHERE event_id IN"
                            " (SELECT event_id FROM events WHERE seq > ? AND seq <= ?)"
                            " GROUP BY event_id, item", (last, rows[-1][0])):
                        fb[eid][item] = value
            if not rows:
                return
            for row in rows:
                yield self._decode(row), fb[row[1]]
            last = rows[-1][0]

    def last_seq(self) -> int:
        """Sequence number of the newest decision (0 when the log is empty)."""
        with self._lock:
            return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])

    def delete_after(self, seq: int) -> int:
        """Drop decisions newer than ``seq`` and their feedback (a resumed replay rewinds the log
        to its checkpoint). Returns the number of decisions removed."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM feedback WHERE event_id IN (SELECT event_id FROM events WHERE seq > ?)",
                                 (int(seq),))
                self._db.execute("DELETE FROM feedback_journal WHERE event_id IN"
                                 " (SELECT event_id FROM events WHERE seq > ?)", (int(seq),))
                n = self._db.execute("DELETE FROM events WHERE seq > ?", (int(seq),)).rowcount
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return int(n)

    def refuse_journal(self, seq: int, reason: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO journal_refused (seq, ts, reason) VALUES (?, ?, ?)",
                             (int(seq), time.time(), reason))

    def journal_refusals(self, limit: int = 100) -> list[tuple[int, str]]:
        with self._lock:
            rows = self._db.execute("SELECT seq, reason FROM journal_refused ORDER BY seq DESC LIMIT ?",
                                    (int(limit),)).fetchall()
        return [(int(s), r) for s, r in rows]

    def prune(self, *, older_than: float | None, max_events: int | None, keep_journal_after: int,
              keep_since: float | None = None) -> PruneResult:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cut = 0
                if older_than is not None:
                    row = self._db.execute("SELECT MAX(seq) FROM events WHERE ts < ?", (float(older_than),)).fetchone()
                    cut = int(row[0] or 0)
                if max_events:
                    row = self._db.execute("SELECT seq FROM events ORDER BY seq DESC LIMIT 1 OFFSET ?",
                                           (int(max_events),)).fetchone()
                    by_size = int(row[0]) if row else 0
                    if keep_since is not None:  # never a decision that may still get feedback
                        young = self._db.execute("SELECT MIN(seq) FROM events WHERE ts >= ?",
                                                 (float(keep_since),)).fetchone()[0]
                        by_size = min(by_size, int(young) - 1) if young is not None else by_size
                    cut = max(cut, by_size)
                n_fb = self._db.execute("DELETE FROM feedback WHERE event_id IN"
                                        " (SELECT event_id FROM events WHERE seq <= ?)", (cut,)).rowcount
                n_j = self._db.execute(
                    "DELETE FROM feedback_journal WHERE seq <= ? AND (ts < ? OR NOT EXISTS"
                    " (SELECT 1 FROM events e WHERE e.event_id = feedback_journal.event_id AND e.seq > ?))",
                    (int(keep_journal_after), float(older_than) if older_than is not None else float("-inf"), cut),
                ).rowcount
                n_ev = self._db.execute("DELETE FROM events WHERE seq <= ?", (cut,)).rowcount
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return PruneResult(int(n_ev), int(n_fb), int(n_j))

    def put_meta(self, key: str, value: str) -> None:
        """Store a small named value with the log (e.g. a feature schema by fingerprint, so
        the logged feature vectors can be read without the engine that wrote them)."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def counts(self) -> dict[str, int]:
        with self._lock:
            n_ev = self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            n_fb = self._db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]
        return {"events": int(n_ev), "feedback": int(n_fb)}

    def close(self) -> None:
        with self._lock:
            self._db.close()
