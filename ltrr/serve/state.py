"""Serving state: the engine a process serves from, the single learner, snapshots and replay.

Design (see docs/serving.md): every serving process — a worker of one ``ltrr serve``, or a
replica on another machine — answers searches from its own Engine copy and writes decisions and
feedback to one shared event log (SQLite in WAL mode on one machine, PostgreSQL for replicas).
Feedback is validated and committed with a journal entry before it is acknowledged. Exactly one
process learns — the one holding the learner lock (:mod:`ltrr.serve.coordination`: a ``flock``
or a PostgreSQL advisory lock): it applies the journal in sequence order to its engine (policy,
click memory, retrained models, ranker) and publishes snapshots of that state tagged with the
journal sequence they include. The other processes follow the snapshots. A new learner (after a
restart, or taking over from a dead one) restores the latest snapshot and replays the journal
after it, so every acknowledged feedback counts exactly once. A journal entry the learner cannot
apply is refused durably with its reason (``refuse_journal``), never skipped silently.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ltrr.config import StoreConfig
from ltrr.contracts.strategy import LearnsFromFeedback
from ltrr.engine import Engine
from ltrr.errors import IncompatibleEventError, LtrrError, UnknownEventError
from ltrr.learner import FeedbackResult
from ltrr.serve.coordination import Coordinator, LocalCoordinator, PostgresCoordinator
from ltrr.serve.metrics import ServeMetrics
from ltrr.store.log_contract import DSN_ENV, JournalEntry
from ltrr.store.persist import MANIFEST
from ltrr.types import Feedback

log = logging.getLogger("ltrr.serve")

#: a journal entry whose application raised something else than "incompatible" is retried on
#: this many polls (a database hiccup) before it is refused with the error as its reason
MAX_APPLY_ATTEMPTS = 3
#: an engine replaced by a reload is closed this long after the swap (in-flight requests finish)
RETIRE_AFTER_S = 30.0


class ServeSettings(BaseModel):
    """What a worker process needs to serve (passed to workers as JSON in an env variable)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine_dir: str
    state_dir: str
    events_path: str | None = None
    #: PostgreSQL DSN: replicas share the event log, journal and snapshots there (overrides the
    #: engine config's [store]; else its dsn, else $LTRR_STORE_DSN when its backend is postgres)
    dsn: str | None = None
    token_file: str | None = None
    #: overrides of the engine config's ``serve`` section
    feedback_window_s: float | None = Field(None, gt=0)
    snapshot_every_s: float | None = Field(None, gt=0)
    max_body_bytes: int | None = Field(None, gt=0)
    #: how often the learner tails the journal and followers look for a new snapshot
    poll_s: float = Field(0.2, gt=0)
    #: how often the learner applies the event log's retention ([store] retention_s, max_events)
    prune_every_s: float = Field(60.0, gt=0)
    #: a client must send its request headers within this many seconds of connecting (or of its
    #: previous response), and its body within ``body_timeout_s`` of the headers (ltrr.serve.protocol)
    header_timeout_s: float = Field(10.0, gt=0)
    body_timeout_s: float = Field(30.0, gt=0)


class EngineNotReadyError(LtrrError):
    """The engine is still loading (or the journal replaying): answered 503, retry later."""


class EngineUnavailableError(LtrrError):
    """A reload's engine directory is missing or incomplete: answered 503, the old engine serves on."""


def _freeze_heap() -> None:
    """Move the loaded engine's objects out of the garbage collector's reach: they live as long
    as the process, and scanning them in every full collection shows up as latency spikes.
    Unfrozen first, so a replaced engine's cycles are still collected after a reload."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def engine_fingerprint(directory: str | os.PathLike) -> str:
    """Identity of a saved engine: hash of its manifest (which lists every file's checksum)."""
    return hashlib.sha256((Path(directory) / MANIFEST).read_bytes()).hexdigest()[:16]


def saved_store_config(engine_dir: str | os.PathLike) -> StoreConfig:
    """The ``[store]`` section of a saved engine (defaults when it cannot be read)."""
    try:
        manifest = json.loads((Path(engine_dir) / MANIFEST).read_text(encoding="utf-8"))
        return StoreConfig.model_validate((manifest.get("config") or {}).get("store") or {})
    except (OSError, json.JSONDecodeError, ValueError):
        return StoreConfig()


class ServingState:
    """Owns the current engine of one serving process and its learner/follower role."""

    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.engine_dir = Path(settings.engine_dir)
        self.state_dir = Path(settings.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        saved = saved_store_config(self.engine_dir)
        self.store = saved.model_copy(update={"backend": "postgres", "dsn": settings.dsn}) if settings.dsn else saved
        self.backend = self.store.backend
        self.events_path = settings.events_path or str(self.state_dir / "events.sqlite")
        self.metrics = ServeMetrics()
        self._engine: Engine | None = None
        self.coord: Coordinator | None = None
        self.fingerprint = ""
        self.applied_seq = 0
        self.snapshot_seq = -1
        self._snapshot_stamp: Any = None
        self.is_learner = False
        self.ready = False
        self.start_error: str | None = None
        self._learn_lock = threading.RLock()
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_snapshot = 0.0
        self._last_prune = time.monotonic()
        self._long_ops = 0  # retrains/snapshots in progress (a racy read costs a request <= 20 ms)
        self._recent: OrderedDict[int, FeedbackResult] = OrderedDict()  # seq -> result, for responses
        self._refused: OrderedDict[int, str] = OrderedDict()  # seq -> reason, for responses
        self._failures: dict[int, int] = {}
        m = self.metrics
        m.gauge("ltrr_ready", "1 once the engine is loaded and the journal replayed.", lambda: float(self.ready))
        m.gauge("ltrr_learner", "1 in the process that applies feedback (the learner).", lambda: float(self.is_learner))
        m.gauge("ltrr_journal_applied_seq", "Feedback journal sequence number this engine's state includes.",
                lambda: float(self.applied_seq if self.is_learner else max(self.snapshot_seq, 0)))
        m.gauge("ltrr_journal_head_seq", "Latest feedback journal sequence number in the event log.",
                lambda: float(self.engine.events.journal_head()))
        m.gauge("ltrr_policy_n_updates", "Updates the served policy has learned from.",
                lambda: float(self.engine.policy.n_updates_))

    # ------------------------------------------------------------------ the engine
    @property
    def engine(self) -> Engine:
        """The engine this process serves; :class:`EngineNotReadyError` while it loads."""
        if self._engine is None:
            raise EngineNotReadyError("The service is starting: the engine is not loaded yet; retry shortly")
        return self._engine

    @property
    def loaded(self) -> bool:
        return self._engine is not None

    # ------------------------------------------------------------------ settings
    @property
    def feedback_window_s(self) -> float:
        return self.settings.feedback_window_s or self.engine.config.serve.feedback_window_s

    @property
    def snapshot_every_s(self) -> float:
        return self.settings.snapshot_every_s or self.engine.config.serve.snapshot_every_s

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Load the engine, take the learner role if free (restore + replay), start the loop."""
        try:
            self.coord = self._coordinator()
            engine, self.fingerprint = self._load_engine()
            self._declare_series(engine)
            self._engine = engine
            if self.coord.try_lead():
                self._become_learner()
            else:
                self._follow()
            _freeze_heap()
            self.ready = True
        except Exception as exc:
            self.start_error = f"{type(exc).__name__}: {exc}"
            log.exception("the engine could not be started")
            raise
        self._thread = threading.Thread(target=self._loop, name="ltrr-learner", daemon=True)
        self._thread.start()
        log.info("serving engine %s (%s store, %s)", self.fingerprint, self.backend,
                 "learner" if self.is_learner else "follower")

    def start_background(self) -> None:
        """Start in a thread, retrying every 2 s (the database may come up after the service):
        meanwhile the process answers liveness, and readiness with 503."""

        def run() -> None:
            while not self._stop.is_set():
                try:
                    self.start()
                    return
                except Exception:  # start() logged it and set start_error (/readyz shows it): retry
                    self._teardown()
                    self._stop.wait(2.0)

        self._starter = threading.Thread(target=run, name="ltrr-start", daemon=True)
        self._starter.start()

    def _teardown(self) -> None:
        """Undo a failed start: release the role and close what was opened."""
        self.is_learner = self.ready = False
        if self.coord is not None:
            with contextlib.suppress(Exception):
                self.coord.close()
            self.coord = None
        if self._engine is not None:
            with contextlib.suppress(Exception):
                self._engine.close()
            self._engine = None

    def stop(self) -> None:
        """Stop the loop; the learner applies what is left and writes a final snapshot."""
        self._stop.set()
        starter = getattr(self, "_starter", None)
        if starter is not None:
            starter.join(timeout=120)
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.is_learner and self._engine is not None:
            try:
                with self._learn_lock:
                    self.catch_up()
                    self.snapshot()
            except Exception:
                log.exception("final snapshot failed")
        if self.coord is not None:
            self.coord.close()
        self.is_learner = False
        self.ready = False
        if self._engine is not None:  # its event log: a connection pool, for PostgreSQL
            with contextlib.suppress(Exception):
                self._engine.close()

    def _coordinator(self) -> Coordinator:
        if self.backend == "postgres":
            dsn = self.store.dsn or os.environ.get(DSN_ENV, "")
            if not dsn:
                raise LtrrError(f"the engine's [store] backend is 'postgres' but no DSN is set: pass --dsn or "
                                f"set ${DSN_ENV}")
            self.store = self.store.model_copy(update={"dsn": dsn})
            return PostgresCoordinator(self.state_dir, dsn)
        return LocalCoordinator(self.state_dir)

    def _load_engine(self) -> tuple[Engine, str]:
        if self.backend == "postgres":
            overrides: dict[str, Any] = {"backend": "postgres", "dsn": self.store.dsn}
            events_path = None
        else:
            overrides, events_path = {}, self.events_path
        for _ in range(5):  # the directory may be replaced (atomic rename) while we read it
            before = engine_fingerprint(self.engine_dir)
            engine = Engine.load(self.engine_dir, events_path=events_path, store=overrides)
            # retraining (seconds of LightGBM) runs in the learner's background thread, never
            # inside a feedback request: the learner only counts, and _loop retrains what is due
            engine.learner.retrain = "deferred"
            if engine_fingerprint(self.engine_dir) == before:
                # unique per process and start: no two processes explore in lockstep (event ids
                # are OS-random UUIDs whatever the seed)
                engine.reseed(os.getpid(), time.time_ns() % (1 << 62))
                return engine, before
            engine.close()
        raise RuntimeError("the engine directory kept changing while it was being loaded")

    # ------------------------------------------------------------------ learner
    def _become_learner(self) -> None:
        assert self.coord is not None
        with self._learn_lock:
            disk = engine_fingerprint(self.engine_dir)
            if disk != self.fingerprint:
                self._swap(*self._load_engine())
            latest = self.coord.latest()
            if latest and latest.get("fingerprint") == self.fingerprint:
                self.coord.restore(self.engine, latest)
                self.applied_seq = int(latest["seq"])
            elif latest:
                # the engine directory was replaced while no learner ran: it is the new base
                self.applied_seq = self.engine.events.journal_head()
                log.warning("engine %s differs from the snapshot's; starting its state at journal seq %d",
                            self.fingerprint, self.applied_seq)
            else:
                self.applied_seq = 0
            self.is_learner = True
            replayed = self.catch_up()
            log.info("learner pid %d: state at journal seq %d (%d entries replayed)",
                     os.getpid(), self.applied_seq, len(replayed))
            self.snapshot()

    def catch_up(self) -> dict[int, FeedbackResult]:
        """Apply every journal entry after ``applied_seq``, in order (learner only).

        An entry this engine cannot learn from (a decision of another engine, one deleted by
        retention) is refused: recorded with its reason in the event log, counted, logged. Any
        other error stops here, to be retried on the next poll (``MAX_APPLY_ATTEMPTS`` times,
        then refused with the error as its reason): an entry is never skipped silently.
        """
        out: dict[int, FeedbackResult] = {}
        if not self.is_learner:
            return out
        with self._learn_lock:
            engine = self.engine
            while True:
                entries = engine.events.journal_since(self.applied_seq, 500)
                if not entries:
                    break
                for entry in entries:
                    try:
                        res = engine.learner.apply_journal(entry)
                    except (IncompatibleEventError, UnknownEventError) as exc:
                        self._refuse(entry, str(exc))
                    except Exception as exc:
                        self.metrics.apply_errors.inc()
                        n = self._failures.get(entry.seq, 0) + 1
                        if n < MAX_APPLY_ATTEMPTS:
                            self._failures[entry.seq] = n
                            log.exception("journal entry %d (event %s) failed to apply (attempt %d of %d); "
                                          "retrying on the next poll", entry.seq, entry.event_id, n,
                                          MAX_APPLY_ATTEMPTS)
                            return out
                        self._failures.pop(entry.seq, None)
                        self._refuse(entry, f"failed to apply {n} times: {type(exc).__name__}: {exc}")
                    else:
                        out[entry.seq] = res
                        self._remember(self._recent, entry.seq, res)
                        self.metrics.journal_applied.inc()
                        if res.policy_updated:
                            self.metrics.policy_updates.inc()
                    self.applied_seq = entry.seq
        return out

    def _refuse(self, entry: JournalEntry, reason: str) -> None:
        self.engine.events.refuse_journal(entry.seq, reason)
        self._remember(self._refused, entry.seq, reason)
        self.metrics.journal_refused.inc()
        log.warning("journal entry %d (event %s) refused, not learned from: %s", entry.seq, entry.event_id, reason)

    @staticmethod
    def _remember(cache: OrderedDict, key: int, value: Any) -> None:
        cache[key] = value
        if len(cache) > 4096:
            cache.popitem(last=False)

    def retrain(self) -> bool:
        """Retrain the ranker from the logged clicks (learner thread; searches keep the old model)."""
        self._long_ops += 1  # requests must not wait for the learner meanwhile
        try:
            with self._learn_lock:
                done = self.engine.learner.retrain_ranker()
                if done:
                    self.metrics.ranker_retrains.inc()
                    self.snapshot()
                return done
        finally:
            self._long_ops -= 1

    def retrain_strategies(self) -> list[str]:
        """Rebuild retrainable strategies (e.g. XMR) from their observed clicks, in the learner
        thread (built outside the engine lock, swapped in under it), then snapshot."""
        self._long_ops += 1
        try:
            with self._learn_lock:
                done = self.engine.learner.retrain_strategies()
                if done:
                    self.snapshot()
                return done
        finally:
            self._long_ops -= 1

    def snapshot(self) -> None:
        """Publish the learner's state with the journal sequence it includes (atomically)."""
        assert self.coord is not None
        self._long_ops += 1
        try:
            with self._learn_lock:
                self.coord.publish(self.engine, {"seq": self.applied_seq, "fingerprint": self.fingerprint,
                                                 "written_at": time.time(), "pid": os.getpid()})
                self.snapshot_seq = self.applied_seq
                self._last_snapshot = time.monotonic()
                self.metrics.snapshots.inc()
        finally:
            self._long_ops -= 1

    def prune(self) -> None:
        """Apply the event log's retention ([store] retention_s, max_events); journal entries the
        latest snapshot does not include are kept (a new learner replays them), and so are
        decisions still inside the feedback window (the size cap never breaks feedback)."""
        store = self.engine.config.store
        if not (store.retention_s or store.max_events):
            return
        now = time.time()
        res = self.engine.events.prune(
            older_than=now - store.retention_s if store.retention_s else None,
            max_events=store.max_events or None, keep_journal_after=max(self.snapshot_seq, 0),
            keep_since=now - self.feedback_window_s)
        self._last_prune = time.monotonic()
        if res.events or res.journal:
            self.metrics.pruned.inc(amount=float(res.events))
            log.info("retention: deleted %d decisions, %d feedback rows, %d journal entries",
                     res.events, res.feedback, res.journal)

    # ------------------------------------------------------------------ follower
    def _follow(self) -> None:
        """Adopt the learner's latest snapshot (and its engine directory, after a reload)."""
        assert self.coord is not None
        latest = self.coord.latest()
        if latest is None:
            return
        stamp = latest.get("stamp")
        if latest.get("fingerprint") != self.fingerprint:
            if engine_fingerprint(self.engine_dir) != latest.get("fingerprint"):
                return  # the directory is being replaced; try again on the next poll
            engine, fp = self._load_engine()
            self.coord.restore(engine, latest)
            self._swap(engine, fp)
        elif stamp == self._snapshot_stamp:
            return
        else:
            self.coord.restore(self.engine, latest)
        self._snapshot_stamp = stamp
        self.snapshot_seq = int(latest.get("seq", 0))

    def _loop(self) -> None:
        assert self.coord is not None
        while not self._stop.wait(self.settings.poll_s):
            try:
                if self.is_learner and not self.coord.still_leading():
                    log.error("lost the learner lock (its database connection broke); following again")
                    self.is_learner, self._snapshot_stamp = False, None
                if self.is_learner:
                    self._handle_reload_request()
                    self.catch_up()
                    if self.engine.learner.ranker_due():
                        self.retrain()
                    if self.engine.learner.strategies_due():
                        self.retrain_strategies()
                    if (self.applied_seq != self.snapshot_seq
                            and time.monotonic() - self._last_snapshot >= self.snapshot_every_s):
                        self.snapshot()
                    if time.monotonic() - self._last_prune >= self.settings.prune_every_s:
                        self.prune()
                elif self.coord.try_lead():
                    self._become_learner()
                else:
                    self._follow()
            except Exception:  # keep serving; the next poll retries
                log.exception("serving state loop")

    # ------------------------------------------------------------------ requests
    def feedback(self, fb: Feedback) -> dict[str, Any]:
        """Store feedback durably; the learner also applies it before answering."""
        engine = self.engine
        rec = engine.learner.record(fb, max_age_s=self.feedback_window_s,
                                    synchronous=engine.config.serve.feedback_synchronous)
        new_keys = {(e.item, e.kind) for e in (rec.entry.events if rec.entry else ())}
        for ev in fb.events:
            self.metrics.feedback.inc(ev.kind, "new" if (ev.item, ev.kind) in new_keys else "duplicate")
        self.metrics.feedback_lag.observe(max(time.time() - rec.decision_ts, 0.0))
        out: dict[str, Any] = {"event_id": fb.event_id, "new_events": len(new_keys),
                               "duplicate_events": rec.duplicate_events, "journal_seq": None,
                               "applied": False, "policy_updated": False}
        if rec.entry is None:
            out["applied"] = True  # nothing new to learn
            return out
        out["journal_seq"] = rec.entry.seq
        out["policy_updated"] = rec.entry.first  # this call closes the event for the policy
        # the learner applies it now unless busy with a retrain or snapshot (the request must not
        # wait seconds on the event loop): then its background thread does, within poll_s
        if self.is_learner and not self._long_ops and self._learn_lock.acquire(timeout=0.02):
            try:
                self.catch_up()
            finally:
                self._learn_lock.release()
        return self.describe_applied(out)

    def describe_applied(self, out: dict[str, Any]) -> dict[str, Any]:
        """Fill ``applied`` (and the policy ``reward``) of a feedback answer from what the learner
        did; :class:`IncompatibleEventError` when the learner refused it."""
        seq = out.get("journal_seq")
        if seq is None:
            return out
        reason = self._refused.get(seq)
        if reason is not None:
            raise IncompatibleEventError(f"Feedback for event {out['event_id']!r} was stored (journal seq {seq}) "
                                         f"but cannot be learned from: {reason}")
        out["applied"] = self.is_learner and self.applied_seq >= seq
        res = self._recent.get(seq)
        if res is not None and res.reward is not None:
            out["reward"] = res.reward
        return out

    def _declare_series(self, engine: Engine) -> None:
        """Export the engine's known label values at 0 (strategies, plans, feedback kinds)."""
        m = self.metrics
        for kind in ("click", "purchase", "dwell"):
            for result in ("new", "duplicate"):
                m.feedback.declare(kind, result)
        menu = engine.policy.menu
        for name in menu.strategies:
            m.strategies.declare(name)
        for depths in menu.plans:
            m.plans.declare(",".join(f"{s}={int(k)}" for s, k in zip(menu.strategies, depths, strict=True)))

    def _swap(self, engine: Engine, fingerprint: str) -> None:
        # in-flight requests keep the old engine object until they finish; its event log (a
        # connection pool with threads, for PostgreSQL) is closed once they are done
        old = self._engine
        self._declare_series(engine)
        self._engine, self.fingerprint = engine, fingerprint
        self.metrics.reloads.inc()
        if old is not None:
            timer = threading.Timer(RETIRE_AFTER_S, old.close)
            timer.daemon = True
            timer.start()
        _freeze_heap()

    def reload(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """Swap in the engine directory as saved now. Searches keep being served meanwhile.

        The new directory becomes the base: online learning continues from the current journal
        position (feedback the old engine learned from is not re-applied to the new models).
        """
        assert self.coord is not None
        with self._reload_lock:
            if not (self.engine_dir / MANIFEST).is_file():
                raise EngineUnavailableError(
                    f"The engine directory {self.engine_dir.name!r} is missing or has no {MANIFEST}; "
                    f"still serving engine {self.fingerprint}")
            disk = engine_fingerprint(self.engine_dir)
            if disk == self.fingerprint:
                return {"reloaded": False, "fingerprint": disk, "detail": "engine directory unchanged"}
            if self.is_learner:
                self._reload_as_learner()
            else:
                self.coord.request_reload(disk)
                deadline = time.monotonic() + timeout_s
                while self.fingerprint != disk and time.monotonic() < deadline:
                    time.sleep(self.settings.poll_s)
                    if not self.is_learner:
                        self._follow()
                if self.fingerprint != disk:
                    raise TimeoutError("The learner did not publish the reloaded engine in time; retry")
            return {"reloaded": True, "fingerprint": self.fingerprint}

    def _reload_as_learner(self) -> None:
        engine, fp = self._load_engine()  # loads while the old engine keeps serving
        with self._learn_lock:
            self.catch_up()  # the old engine learns everything logged so far
            # applied_seq stays: entries after it go to the new engine (refused if incompatible)
            self._swap(engine, fp)
            self.snapshot()

    def _handle_reload_request(self) -> None:
        assert self.coord is not None
        if self.coord.take_reload_request() is None:
            return
        if (self.engine_dir / MANIFEST).is_file() and engine_fingerprint(self.engine_dir) != self.fingerprint:
            self._reload_as_learner()

    def status(self) -> dict[str, Any]:
        engine = self.engine
        learned = {n: s.learned_counts() for n, s in engine.strategies.items()
                   if isinstance(s, LearnsFromFeedback)}
        return {"pid": os.getpid(), "learner": self.is_learner, "ready": self.ready, "backend": self.backend,
                "engine_fingerprint": self.fingerprint,
                "applied_seq": self.applied_seq if self.is_learner else None,
                "snapshot_seq": self.snapshot_seq, "journal_head": engine.events.journal_head(),
                "journal_refused": len(engine.events.journal_refusals(10_000)),
                "policy": {"type": engine.policy.type_name, "n_updates": int(engine.policy.n_updates_)},
                "ranker_version": engine.ranker.version_, "event_log": engine.events.counts(),
                "ranker_retrain": {"every": engine.config.ranker.retrain_every,
                                   "unit": engine.config.ranker.retrain_unit,
                                   "since": engine.learner.schedule.since if engine.learner.schedule else 0},
                "learned_strategies": learned}
