"""The decision/feedback event log, in SQLite (WAL).

Each decision is one row: query, context, context features ``x``, plan with propensities, the
candidate union with provenance, the ranker features of every candidate as served (feature
logging), the page shown and model versions. Feedback rows are keyed by (event id, item, kind),
so the same feedback sent twice is stored once. Arrays are stored as ``.npy`` bytes (no pickle).
"""

from __future__ import annotations

import io
import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ltrr.types import Candidates, Decision, FeedbackEvent, Plan

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
"""


#: raw array blob: magic, uint32 header length, JSON header {name: [dtype, shape, offset]}, bytes.
#: ~15x cheaper to write than an npz (a zip member per array) — it is on every search's path.
_RAW_MAGIC = b"LTRRARR1"


def _pack(**arrays: np.ndarray) -> bytes:
    header: dict[str, list] = {}
    chunks: list[bytes] = []
    offset = 0
    for name, a in arrays.items():
        a = np.asarray(a)
        if a.dtype.hasobject:
            raise TypeError(f"array {name!r} has dtype object; the event log stores numeric arrays only")
        header[name] = [a.dtype.str, list(a.shape), offset]
        chunks.append(a.tobytes(order="C"))
        offset += a.nbytes
    head = json.dumps(header, separators=(",", ":")).encode()
    return b"".join([_RAW_MAGIC, len(head).to_bytes(4, "little"), head, *chunks])


def _unpack(blob: bytes) -> dict[str, np.ndarray]:
    if not blob.startswith(_RAW_MAGIC):  # rows written before the raw format: npz
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    n = int.from_bytes(blob[8:12], "little")
    header = json.loads(blob[12:12 + n])
    base = 12 + n
    out = {}
    for name, (dtype, shape, offset) in header.items():
        dt = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        out[name] = np.frombuffer(blob, dtype=dt, count=count, offset=base + offset).reshape(shape).copy()
    return out


@dataclass(frozen=True)
class LoggedEvent:
    """A decision as read back from the log."""

    seq: int
    event_id: str
    ts: float
    query: str
    context: dict[str, Any]
    plan: Plan
    page_ids: tuple[str, ...]
    model_versions: dict[str, str]
    x: np.ndarray
    candidates: Candidates
    features: np.ndarray
    page_rows: np.ndarray
    page_idx: np.ndarray
    credited: bool
    #: the team of each page item when the page was interleaved (empty otherwise)
    teams: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int8))
    #: what each strategy cost in ms (empty for decisions logged without it)
    strategy_ms: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.float64))


@dataclass(frozen=True)
class JournalEntry:
    """One feedback call that changed something, in log order (``seq`` increases).

    ``events`` are only the feedback events that were new; ``first`` is True when this call
    closed the event for the policy (its first feedback, possibly empty). Replaying the journal
    from a sequence number reproduces exactly the learning that happened after it.
    """

    seq: int
    event_id: str
    ts: float
    first: bool
    events: tuple[FeedbackEvent, ...]


class EventLog:
    """Append-only decision log with idempotent feedback."""

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
        c = d.candidates
        where = {int(v): i for i, v in enumerate(c.items)}
        page_idx = np.array([where[int(r)] for r in d.page], dtype=np.int64)
        extra = {} if d.teams is None else {"teams": np.asarray(d.teams, dtype=np.int8)}
        if d.strategy_ms is not None:
            extra["strategy_ms"] = np.asarray(d.strategy_ms, dtype=np.float64)
        arrays = _pack(x=np.asarray(d.x, dtype=np.float64), items=c.items, scores=c.scores, ranks=c.ranks,
                       features=d.features, page=d.page, page_scores=d.page_scores, page_idx=page_idx,
                       **extra)
        with self._lock:
            self._db.execute(
                "INSERT INTO events (event_id, ts, query, context, plan, page, model_versions, arrays)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (d.event_id, d.ts, d.query, json.dumps(dict(d.context), default=str),
                 json.dumps({**d.plan.to_dict(), "strategies": list(c.strategies)}),
                 json.dumps(list(d.page_ids)), json.dumps(dict(d.model_versions)), arrays),
            )

    def get(self, event_id: str) -> LoggedEvent | None:
        with self._lock:
            row = self._db.execute(
                "SELECT seq, event_id, ts, query, context, plan, page, model_versions, arrays, credited"
                " FROM events WHERE event_id = ?", (event_id,)).fetchone()
        return None if row is None else self._decode(row)

    def _decode(self, row: Sequence[Any]) -> LoggedEvent:
        seq, event_id, ts, query, context, plan, page, versions, blob, credited = row
        plan_d = json.loads(plan)
        a = _unpack(blob)
        strategies = tuple(plan_d.get("strategies") or plan_d["depths"].keys())
        cands = Candidates(strategies, a["items"], a["scores"], a["ranks"])
        return LoggedEvent(seq, event_id, ts, query, json.loads(context), Plan.from_dict(plan_d),
                           tuple(json.loads(page)), json.loads(versions), a["x"], cands,
                           a["features"], a["page"], a["page_idx"], bool(credited),
                           a.get("teams", np.empty(0, dtype=np.int8)),
                           a.get("strategy_ms", np.empty(0, dtype=np.float64)))

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
            if synchronous is not None and self.path != ":memory:":
                if synchronous not in ("NORMAL", "FULL"):
                    raise ValueError(f"synchronous must be 'NORMAL' or 'FULL'; got {synchronous!r}")
                self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                new = self._insert_feedback(event_id, events, ts)
                first = self._db.execute(
                    "UPDATE events SET credited = 1 WHERE event_id = ? AND credited = 0",
                    (event_id,)).rowcount == 1
                entry = None
                if new or first:
                    payload = json.dumps([[e.item, e.kind, e.position, float(e.value)] for e in new])
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
        return [JournalEntry(int(s), eid, float(ts), bool(first),
                             tuple(FeedbackEvent(item, kind, pos, val) for item, kind, pos, val in json.loads(evs)))
                for s, eid, ts, first, evs in rows]

    def journal_head(self) -> int:
        """The latest journal sequence number (0 when empty)."""
        with self._lock:
            return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM feedback_journal").fetchone()[0])

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
