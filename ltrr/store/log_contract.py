"""The event-log contract: what the engine, the learner and the service need from a store of
decisions, feedback and the feedback journal.

Two implementations: :class:`ltrr.store.events.EventLog` (SQLite in WAL mode, the embedded
default) and :class:`ltrr.store.postgres.PostgresEventLog` (PostgreSQL through a psycopg 3
connection pool, shared by replicas on several machines). :func:`open_event_log` picks one from
the ``[store]`` config. Both keep the same promises, checked by the same tests
(``tests/ltrr/store/test_event_log_contract.py``):

* a decision row is committed before ``append`` returns;
* ``record_feedback`` stores feedback idempotently per (event id, item, kind), credits the event
  to the policy once, and appends a journal entry, in one transaction that is durable when it
  returns (an acknowledged feedback survives a crash of the process that acknowledged it);
* journal sequence numbers are handed out in commit order: a reader that saw entry ``n`` has
  seen every entry before it, so ``journal_since(n)`` never skips one;
* entries the learner cannot apply are marked refused with a reason (``refuse_journal``), never
  dropped silently.

Shared here: the decoded row types and the raw array blob both stores write.
"""

from __future__ import annotations

import io
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ltrr.types import Candidates, Decision, FeedbackEvent, Plan

if TYPE_CHECKING:
    from ltrr.config import StoreConfig

#: environment variable holding the PostgreSQL DSN when ``[store] dsn`` is empty (keeps
#: passwords out of config files and saved engine manifests)
DSN_ENV = "LTRR_STORE_DSN"

#: raw array blob: magic, uint32 header length, JSON header {name: [dtype, shape, offset]}, bytes.
#: ~15x cheaper to write than an npz (a zip member per array) — it is on every search's path.
_RAW_MAGIC = b"LTRRARR1"


def pack_arrays(**arrays: np.ndarray) -> bytes:
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


def unpack_arrays(blob: bytes) -> dict[str, np.ndarray]:
    blob = bytes(blob)
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


@dataclass(frozen=True)
class PruneResult:
    """What one retention pass deleted."""

    events: int
    feedback: int
    journal: int


def decision_row(d: Decision) -> tuple[str, float, str, str, str, str, str, bytes]:
    """The column values of a decision row: (event_id, ts, query, context, plan, page,
    model_versions, arrays), the same in every store."""
    c = d.candidates
    where = {int(v): i for i, v in enumerate(c.items)}
    page_idx = np.array([where[int(r)] for r in d.page], dtype=np.int64)
    extra = {} if d.teams is None else {"teams": np.asarray(d.teams, dtype=np.int8)}
    if d.strategy_ms is not None:
        extra["strategy_ms"] = np.asarray(d.strategy_ms, dtype=np.float64)
    arrays = pack_arrays(x=np.asarray(d.x, dtype=np.float64), items=c.items, scores=c.scores, ranks=c.ranks,
                         features=d.features, page=d.page, page_scores=d.page_scores, page_idx=page_idx,
                         **extra)
    return (d.event_id, float(d.ts), d.query, json.dumps(dict(d.context), default=str),
            json.dumps({**d.plan.to_dict(), "strategies": list(c.strategies)}),
            json.dumps(list(d.page_ids)), json.dumps(dict(d.model_versions)), arrays)


def decode_event(row: Sequence[Any]) -> LoggedEvent:
    """A :class:`LoggedEvent` from (seq, event_id, ts, query, context, plan, page,
    model_versions, arrays, credited)."""
    seq, event_id, ts, query, context, plan, page, versions, blob, credited = row
    plan_d = json.loads(plan)
    a = unpack_arrays(blob)
    strategies = tuple(plan_d.get("strategies") or plan_d["depths"].keys())
    cands = Candidates(strategies, a["items"], a["scores"], a["ranks"])
    return LoggedEvent(int(seq), event_id, float(ts), query, json.loads(context), Plan.from_dict(plan_d),
                       tuple(json.loads(page)), json.loads(versions), a["x"], cands,
                       a["features"], a["page"], a["page_idx"], bool(credited),
                       a.get("teams", np.empty(0, dtype=np.int8)),
                       a.get("strategy_ms", np.empty(0, dtype=np.float64)))


def journal_payload(events: Sequence[FeedbackEvent]) -> str:
    return json.dumps([[e.item, e.kind, e.position, float(e.value)] for e in events])


def journal_entry(seq: int, event_id: str, ts: float, first: bool, payload: str) -> JournalEntry:
    return JournalEntry(int(seq), event_id, float(ts), bool(first),
                        tuple(FeedbackEvent(item, kind, pos, val) for item, kind, pos, val in json.loads(payload)))


def check_synchronous(synchronous: str | None) -> None:
    if synchronous is not None and synchronous not in ("NORMAL", "FULL"):
        raise ValueError(f"synchronous must be 'NORMAL' or 'FULL'; got {synchronous!r}")


class EventStore(ABC):
    """Append-only decision log with idempotent feedback and the feedback journal."""

    #: "sqlite" or "postgres"
    backend: str = ""

    # ------------------------------------------------------------------ decisions
    @abstractmethod
    def append(self, d: Decision) -> None:
        """Log a decision (committed when this returns)."""

    @abstractmethod
    def get(self, event_id: str) -> LoggedEvent | None:
        """The decision with this id, or None."""

    @abstractmethod
    def last_seq(self) -> int:
        """Sequence number of the newest decision (0 when the log is empty)."""

    @abstractmethod
    def iter_events(self, after_seq: int = 0, batch: int = 1000) -> Iterator[tuple[LoggedEvent, dict[str, float]]]:
        """Every decision after ``after_seq`` in log order, with its per-item feedback sums,
        read ``batch`` rows at a time."""

    @abstractmethod
    def delete_after(self, seq: int) -> int:
        """Drop decisions newer than ``seq`` with their feedback and journal entries (a resumed
        replay rewinds the log to its checkpoint); returns the number of decisions removed."""

    # ------------------------------------------------------------------ feedback
    @abstractmethod
    def record_feedback(self, event_id: str, events: Sequence[FeedbackEvent], ts: float, *,
                        synchronous: str | None = None) -> tuple[JournalEntry | None, int]:
        """Store feedback, credit the event once and journal what changed, in one durable
        transaction. Returns the journal entry (None when nothing changed) and the number of
        duplicate events. ``synchronous`` ("NORMAL"/"FULL") may raise the durability of this
        commit above the store's default."""

    @abstractmethod
    def add_feedback(self, event_id: str, events: Sequence[FeedbackEvent], ts: float) -> list[FeedbackEvent]:
        """Store feedback rows without a journal entry (ranker training events of a replay);
        returns the events that were new."""

    @abstractmethod
    def feedback_for(self, event_id: str) -> list[tuple[str, str, float]]:
        """(item, kind, value) of every feedback row of an event."""

    @abstractmethod
    def training_events(self, limit: int) -> Iterator[tuple[LoggedEvent, dict[str, float]]]:
        """The most recent ``limit`` events with at least one click, oldest first, with their
        per-item reward (sum of feedback values)."""

    # ------------------------------------------------------------------ journal
    @abstractmethod
    def journal_since(self, seq: int, limit: int = 1000) -> list[JournalEntry]:
        """Journal entries with sequence number > ``seq``, oldest first (at most ``limit``)."""

    @abstractmethod
    def journal_head(self) -> int:
        """The latest journal sequence number (0 when empty)."""

    @abstractmethod
    def refuse_journal(self, seq: int, reason: str) -> None:
        """Record durably that entry ``seq`` was not learned from, and why."""

    @abstractmethod
    def journal_refusals(self, limit: int = 100) -> list[tuple[int, str]]:
        """The most recent refused entries as (seq, reason), newest first."""

    # ------------------------------------------------------------------ retention
    @abstractmethod
    def prune(self, *, older_than: float | None, max_events: int | None, keep_journal_after: int,
              keep_since: float | None = None) -> PruneResult:
        """Delete decisions logged before ``older_than`` (a timestamp) and the oldest beyond
        ``max_events``, with their feedback, and journal entries up to ``keep_journal_after``
        (the sequence the latest state snapshot includes) that belong to deleted decisions or
        are older than ``older_than``. Journal entries after ``keep_journal_after`` are never
        deleted: restoring the snapshot needs them. Decisions logged at or after ``keep_since``
        (those still inside the feedback window) are kept even beyond ``max_events``."""

    # ------------------------------------------------------------------ meta
    @abstractmethod
    def put_meta(self, key: str, value: str) -> None:
        """Store a small named value with the log (e.g. a feature schema by fingerprint)."""

    @abstractmethod
    def get_meta(self, key: str) -> str | None: ...

    @abstractmethod
    def counts(self) -> dict[str, int]:
        """``events`` and ``feedback`` row counts."""

    @abstractmethod
    def close(self) -> None: ...


def open_event_log(store: StoreConfig, *, events_path: str | None = None) -> EventStore:
    """The event log the ``[store]`` config names: SQLite at ``events_path`` (default
    ``store.events_path``) or PostgreSQL at ``store.dsn`` (or ``$LTRR_STORE_DSN``)."""
    if store.backend == "postgres":
        from ltrr.errors import ConfigError
        from ltrr.store.postgres import PostgresEventLog

        dsn = store.dsn or os.environ.get(DSN_ENV, "")
        if not dsn:
            raise ConfigError(f"[store] backend = 'postgres' needs a dsn: set [store] dsn or ${DSN_ENV}")
        return PostgresEventLog(dsn, synchronous=store.synchronous, pool_size=store.pool_size)
    from ltrr.store.events import EventLog

    return EventLog(store.events_path if events_path is None else events_path, store.synchronous)
