"""How serving processes that share one event log elect the learner and exchange its state.

Two implementations of :class:`Coordinator`, one per store backend:

* :class:`LocalCoordinator` (SQLite, one machine): the learner is whoever holds an exclusive
  ``flock`` on ``<state>/learner.lock``; snapshots are a directory ``<state>/snapshot`` written
  atomically; a reload request is the file ``<state>/reload-request``.
* :class:`PostgresCoordinator` (replicas on any number of machines): the learner holds a
  PostgreSQL session advisory lock on a dedicated connection (released by the server when the
  process or its machine dies); snapshots are published into the database, file by file,
  content-addressed, through the lock's own connection (a learner that lost its lock cannot
  publish); a reload request is a row.

Both let a learner publish ``save_state`` snapshots tagged with the journal sequence they include,
and a follower (or a new learner) restore the latest one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ltrr.store.engine_dir import load_state, save_state
from ltrr.store.persist import MANIFEST, remove_stale_temp_dirs

if TYPE_CHECKING:
    from ltrr.engine import Engine


class Coordinator(ABC):
    """The learner election and the snapshot channel of one serving process."""

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.state_dir.mkdir(parents=True, exist_ok=True)

    @abstractmethod
    def try_lead(self) -> bool:
        """Take the learner role if it is free (non-blocking); True while this process holds it."""

    @abstractmethod
    def still_leading(self) -> bool:
        """False once the role was lost (e.g. the database connection holding the lock broke)."""

    @abstractmethod
    def step_down(self) -> None:
        """Give up the role (at shutdown)."""

    @abstractmethod
    def latest(self) -> dict[str, Any] | None:
        """Meta of the newest published snapshot (``seq``, ``fingerprint``, ``written_at``, ...),
        with ``stamp``: a value that changes with every publication; None when there is none."""

    @abstractmethod
    def publish(self, engine: Engine, meta: dict[str, Any]) -> None:
        """Snapshot ``engine``'s learned state with ``meta`` (learner only)."""

    @abstractmethod
    def restore(self, engine: Engine, latest: dict[str, Any]) -> dict[str, Any]:
        """Load the snapshot ``latest`` describes into ``engine``; returns its meta."""

    @abstractmethod
    def request_reload(self, fingerprint: str) -> None:
        """Ask the learner to reload the engine directory (it now has ``fingerprint``)."""

    @abstractmethod
    def take_reload_request(self) -> str | None:
        """The pending reload request, removed (learner only)."""

    def close(self) -> None:
        self.step_down()


class LocalCoordinator(Coordinator):
    """flock + a snapshot directory on the local disk (see the module docstring)."""

    def __init__(self, state_dir: Path):
        super().__init__(state_dir)
        self.snapshot_dir = state_dir / "snapshot"
        self._fd: int | None = None

    def try_lead(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.state_dir / "learner.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        # only the lock holder writes snapshots: temp directories of dead writers can go now
        remove_stale_temp_dirs(self.state_dir, self.snapshot_dir.name, any_owner=True)
        return True

    def still_leading(self) -> bool:
        return self._fd is not None

    def step_down(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the flock
            self._fd = None

    def latest(self) -> dict[str, Any] | None:
        try:
            manifest = json.loads((self.snapshot_dir / MANIFEST).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        meta = dict(manifest.get("meta", {}))
        meta["stamp"] = meta.get("written_at")
        return meta

    def publish(self, engine: Engine, meta: dict[str, Any]) -> None:
        save_state(engine, self.snapshot_dir, **meta)

    def restore(self, engine: Engine, latest: dict[str, Any]) -> dict[str, Any]:
        return load_state(engine, self.snapshot_dir)

    def request_reload(self, fingerprint: str) -> None:
        (self.state_dir / "reload-request").write_text(fingerprint, encoding="utf-8")

    def take_reload_request(self) -> str | None:
        req = self.state_dir / "reload-request"
        try:
            value = req.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        req.unlink(missing_ok=True)
        return value


class PostgresCoordinator(Coordinator):
    """Advisory-lock election and snapshots published in PostgreSQL (see the module docstring).

    A follower keeps its last downloaded snapshot in ``<state>/replica-<pid>``, so the next
    download fetches only the files that changed.
    """

    def __init__(self, state_dir: Path, dsn: str):
        from ltrr.store.postgres import AdvisoryLock, PostgresSnapshots, connect_pool

        super().__init__(state_dir)
        for name in ("replica", "snapshot"):  # left by replicas killed in this state directory
            remove_stale_temp_dirs(state_dir, name)
        self.pool = connect_pool(dsn, 2, name="ltrr-coordination")
        self.snapshots = PostgresSnapshots(self.pool)
        self.lock = AdvisoryLock(dsn)
        self.cache = state_dir / f"replica-{os.getpid()}"

    def try_lead(self) -> bool:
        return self.lock.try_acquire()

    def still_leading(self) -> bool:
        return self.lock.held()

    def step_down(self) -> None:
        self.lock.release()

    def latest(self) -> dict[str, Any] | None:
        row = self.snapshots.latest()
        if row is None:
            return None
        return {**row["meta"], "stamp": row["id"], "snapshot_id": row["id"]}

    def publish(self, engine: Engine, meta: dict[str, Any]) -> None:
        conn = self.lock.connection()
        if conn is None:
            raise RuntimeError("not the learner: the learner lock is not held")
        with tempfile.TemporaryDirectory(prefix=f".snapshot.tmp-{os.getpid()}-", dir=self.state_dir) as tmp:
            save_state(engine, Path(tmp) / "snapshot", **meta)
            self.snapshots.publish(Path(tmp) / "snapshot", meta, conn)

    def restore(self, engine: Engine, latest: dict[str, Any]) -> dict[str, Any]:
        fresh = self.state_dir / f".replica-{os.getpid()}.tmp-{latest['snapshot_id']}"
        shutil.rmtree(fresh, ignore_errors=True)
        try:
            self.snapshots.fetch(int(latest["snapshot_id"]), fresh, cache=self.cache if self.cache.exists() else None)
            meta = load_state(engine, fresh)
        except BaseException:
            shutil.rmtree(fresh, ignore_errors=True)
            raise
        shutil.rmtree(self.cache, ignore_errors=True)
        os.replace(fresh, self.cache)
        return meta

    def request_reload(self, fingerprint: str) -> None:
        self.snapshots.request("reload", fingerprint)

    def take_reload_request(self) -> str | None:
        return self.snapshots.take_request("reload")

    def close(self) -> None:
        self.step_down()
        with contextlib.suppress(Exception):
            self.pool.close()
        shutil.rmtree(self.cache, ignore_errors=True)
