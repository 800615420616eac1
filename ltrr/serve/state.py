"""Serving state: the engine a worker serves from, the single learner, snapshots and replay.

Design (see docs/serving.md): every worker process answers searches from its own Engine copy
and writes decisions and feedback to one shared SQLite event log (WAL). Feedback is validated
and committed with a journal entry before it is acknowledged. Exactly one process — whoever
holds an exclusive ``flock`` on ``<state>/learner.lock`` — learns: it applies the journal in
sequence order to its engine (policy, click memory, ranker) and periodically snapshots that
state atomically with the journal sequence number it includes. The other workers follow the
snapshots. On restart the learner restores the snapshot and replays the journal after it, so
every acknowledged feedback counts exactly once. If the learner dies, another worker takes the
lock and does the same.
"""

from __future__ import annotations

import fcntl
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

from ltrr.contracts.strategy import LearnsFromFeedback
from ltrr.engine import Engine
from ltrr.learner import FeedbackResult
from ltrr.serve.metrics import ServeMetrics
from ltrr.store.engine_dir import load_state, save_state
from ltrr.store.persist import MANIFEST
from ltrr.types import Feedback

log = logging.getLogger("ltrr.serve")


class ServeSettings(BaseModel):
    """What a worker process needs to serve (passed to workers as JSON in an env variable)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine_dir: str
    state_dir: str
    events_path: str | None = None
    token_file: str | None = None
    #: overrides of the engine config's ``serve`` section
    feedback_window_s: float | None = Field(None, gt=0)
    snapshot_every_s: float | None = Field(None, gt=0)
    max_body_bytes: int | None = Field(None, gt=0)
    #: how often the learner tails the journal and followers look for a new snapshot
    poll_s: float = Field(0.2, gt=0)


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


class ServingState:
    """Owns the current engine of one worker process and its learner/follower role."""

    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.engine_dir = Path(settings.engine_dir)
        self.state_dir = Path(settings.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.events_path = settings.events_path or str(self.state_dir / "events.sqlite")
        self.snapshot_dir = self.state_dir / "snapshot"
        self.metrics = ServeMetrics()
        self._engine: Engine | None = None
        self.fingerprint = ""
        self.applied_seq = 0
        self.snapshot_seq = -1
        self._snapshot_stamp: float | None = None
        self.is_learner = False
        self.ready = False
        self._learn_lock = threading.RLock()
        self._reload_lock = threading.Lock()
        self._lock_fd: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_snapshot = 0.0
        self._long_ops = 0  # retrains/snapshots in progress (a racy read costs a request <= 20 ms)
        self._recent: OrderedDict[int, FeedbackResult] = OrderedDict()  # seq -> result, for responses
        m = self.metrics
        m.gauge("ltrr_ready", "1 once the engine is loaded and the journal replayed.", lambda: float(self.ready))
        m.gauge("ltrr_learner", "1 in the process that applies feedback (the learner).", lambda: float(self.is_learner))
        m.gauge("ltrr_journal_applied_seq", "Feedback journal sequence number this engine's state includes.",
                lambda: float(self.applied_seq if self.is_learner else max(self.snapshot_seq, 0)))
        m.gauge("ltrr_journal_head_seq", "Latest feedback journal sequence number in the event log.",
                lambda: float(self.engine.events.journal_head()))
        m.gauge("ltrr_policy_n_updates", "Updates the served policy has learned from.",
                lambda: float(self.engine.policy.n_updates_))

    @property
    def engine(self) -> Engine:
        """The engine this worker serves (loaded by :meth:`start`; requests arrive after)."""
        if self._engine is None:
            raise RuntimeError("the engine is not loaded yet")
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
        self._engine, self.fingerprint = self._load_engine()
        if self._try_lock():
            self._become_learner()
        else:
            self._follow()
        _freeze_heap()
        self.ready = True
        self._thread = threading.Thread(target=self._loop, name="ltrr-learner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop; the learner applies what is left and writes a final snapshot."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.is_learner:
            with self._learn_lock:
                self.catch_up()
                self.snapshot()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None
        self.ready = False

    def _load_engine(self) -> tuple[Engine, str]:
        for _ in range(5):  # the directory may be replaced (atomic rename) while we read it
            before = engine_fingerprint(self.engine_dir)
            engine = Engine.load(self.engine_dir, events_path=self.events_path)
            # retraining (seconds of LightGBM) runs in the learner's background thread, never
            # inside a feedback request: the learner only counts, and _loop retrains what is due
            engine.learner.retrain = "deferred"
            if engine_fingerprint(self.engine_dir) == before:
                # unique per process and start: no two processes explore in lockstep (event ids
                # are OS-random UUIDs whatever the seed)
                engine.reseed(os.getpid(), time.time_ns() % (1 << 62))
                return engine, before
            engine.close()
        raise RuntimeError(f"{self.engine_dir} kept changing while it was being loaded")

    def _try_lock(self) -> bool:
        if self._lock_fd is not None:
            return True
        fd = os.open(self.state_dir / "learner.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    # ------------------------------------------------------------------ learner
    def _snapshot_meta(self) -> dict[str, Any] | None:
        try:
            manifest = json.loads((self.snapshot_dir / MANIFEST).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return dict(manifest.get("meta", {}))

    def _become_learner(self) -> None:
        with self._learn_lock:
            disk = engine_fingerprint(self.engine_dir)
            if disk != self.fingerprint:
                self._swap(*self._load_engine())
            meta = self._snapshot_meta()
            if meta and meta.get("fingerprint") == self.fingerprint:
                load_state(self.engine, self.snapshot_dir)
                self.applied_seq = int(meta["seq"])
            elif meta:
                # the engine directory was replaced while no learner ran: it is the new base
                self.applied_seq = self.engine.events.journal_head()
                log.warning("engine %s differs from the snapshot's; starting its state at journal seq %d",
                            self.engine_dir, self.applied_seq)
            else:
                self.applied_seq = 0
            self.is_learner = True
            replayed = self.catch_up()
            log.info("learner pid %d: state at journal seq %d (%d entries replayed)",
                     os.getpid(), self.applied_seq, len(replayed))
            self.snapshot()

    def catch_up(self) -> dict[int, FeedbackResult]:
        """Apply every journal entry after ``applied_seq``, in order (learner only)."""
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
                    except Exception:  # one bad entry must not stall learning for good
                        log.exception("journal entry %d (event %s) failed to apply; skipped", entry.seq, entry.event_id)
                        self.metrics.apply_errors.inc()
                    else:
                        out[entry.seq] = res
                        self._recent[entry.seq] = res
                        if len(self._recent) > 4096:
                            self._recent.popitem(last=False)
                        self.metrics.journal_applied.inc()
                        if res.policy_updated:
                            self.metrics.policy_updates.inc()
                    self.applied_seq = entry.seq
        return out

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
        """Atomically write the learner's state with the journal sequence it includes."""
        self._long_ops += 1
        try:
            with self._learn_lock:
                save_state(self.engine, self.snapshot_dir, seq=self.applied_seq, fingerprint=self.fingerprint,
                           written_at=time.time(), pid=os.getpid())
                self.snapshot_seq = self.applied_seq
                self._last_snapshot = time.monotonic()
                self.metrics.snapshots.inc()
        finally:
            self._long_ops -= 1

    # ------------------------------------------------------------------ follower
    def _follow(self) -> None:
        """Adopt the learner's latest snapshot (and its engine directory, after a reload)."""
        meta = self._snapshot_meta()
        if meta is None:
            return
        stamp = meta.get("written_at")
        if meta.get("fingerprint") != self.fingerprint:
            if engine_fingerprint(self.engine_dir) != meta.get("fingerprint"):
                return  # the directory is being replaced; try again on the next poll
            engine, fp = self._load_engine()
            load_state(engine, self.snapshot_dir)
            self._swap(engine, fp)
        elif stamp == self._snapshot_stamp:
            return
        else:
            load_state(self.engine, self.snapshot_dir)
        self._snapshot_stamp = stamp
        self.snapshot_seq = int(meta.get("seq", 0))

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.poll_s):
            try:
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
                elif self._try_lock():
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
        """Fill ``applied`` (and the policy ``reward``) of a feedback answer from what the learner did."""
        seq = out.get("journal_seq")
        if seq is None:
            return out
        out["applied"] = self.is_learner and self.applied_seq >= seq
        res = self._recent.get(seq)
        if res is not None and res.reward is not None:
            out["reward"] = res.reward
        return out

    def _swap(self, engine: Engine, fingerprint: str) -> None:
        # in-flight requests keep the old engine object until they finish; it closes when collected
        self._engine, self.fingerprint = engine, fingerprint
        self.metrics.reloads.inc()
        _freeze_heap()

    def reload(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """Swap in the engine directory as saved now. Searches keep being served meanwhile.

        The new directory becomes the base: online learning continues from the current journal
        head (feedback logged before the reload is not re-applied to the new models).
        """
        with self._reload_lock:
            disk = engine_fingerprint(self.engine_dir)
            if disk == self.fingerprint:
                return {"reloaded": False, "fingerprint": disk, "detail": "engine directory unchanged"}
            if self.is_learner:
                self._reload_as_learner()
            else:
                (self.state_dir / "reload-request").write_text(disk, encoding="utf-8")
                deadline = time.monotonic() + timeout_s
                while self.fingerprint != disk and time.monotonic() < deadline:
                    time.sleep(self.settings.poll_s)
                    if not self.is_learner:
                        self._follow()
                if self.fingerprint != disk:
                    raise TimeoutError("the learner did not publish the reloaded engine in time")
            return {"reloaded": True, "fingerprint": self.fingerprint}

    def _reload_as_learner(self) -> None:
        engine, fp = self._load_engine()  # loads while the old engine keeps serving
        with self._learn_lock:
            self.catch_up()
            self._swap(engine, fp)
            self.applied_seq = engine.events.journal_head()
            self.snapshot()

    def _handle_reload_request(self) -> None:
        req = self.state_dir / "reload-request"
        if not req.exists():
            return
        req.unlink(missing_ok=True)
        if engine_fingerprint(self.engine_dir) != self.fingerprint:
            self._reload_as_learner()

    def status(self) -> dict[str, Any]:
        engine = self.engine
        learned = {n: s.learned_counts() for n, s in engine.strategies.items()
                   if isinstance(s, LearnsFromFeedback)}
        return {"pid": os.getpid(), "learner": self.is_learner, "ready": self.ready,
                "engine_fingerprint": self.fingerprint,
                "applied_seq": self.applied_seq if self.is_learner else None,
                "snapshot_seq": self.snapshot_seq, "journal_head": engine.events.journal_head(),
                "policy": {"type": engine.policy.type_name, "n_updates": int(engine.policy.n_updates_)},
                "ranker_version": engine.ranker.version_, "event_log": engine.events.counts(),
                "ranker_retrain": {"every": engine.config.ranker.retrain_every,
                                   "unit": engine.config.ranker.retrain_unit,
                                   "since": engine.learner.schedule.since if engine.learner.schedule else 0},
                "learned_strategies": learned}
