"""Fixtures for real HTTP tests: a small saved engine and `ltrr serve` run as a subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ltrr.config import DATA_DIR, parse_config
from ltrr.engine import Engine
from ltrr.store.pg_local import find_pg_bin, shared_server

TOKEN = "test-token-0123456789"
#: every plan runs BM25, so every search shows items that can be clicked
SMALL_CONFIG = {
    "seed": 0,
    "catalog": {"path": str(DATA_DIR / "movies" / "catalog.jsonl"), "limit": 300,
                "text_fields": ["title", "directors", "cast", "genres", "year"]},
    "strategies": [{"name": "bm25", "depths": [0, 10, 30]}, {"name": "memory", "depths": [0, 10]}],
    "policy": {"type": "epsilon_greedy", "params": {"epsilon": 0.2}, "budget": 100,
               "plans": [{"bm25": 10, "memory": 0}, {"bm25": 30, "memory": 0}, {"bm25": 10, "memory": 10}]},
    "ranker": {"retrain_every": 0},
    # the serving tests check rewards exactly: no measured-latency cost
    "reward": {"kind": "any_click", "cost_per_candidate": 0.0005, "latency_weight": 0.0},
}


def build_engine(directory: Path, **overrides) -> Path:
    cfg = parse_config({**SMALL_CONFIG, **overrides}, "<test config>")
    engine = Engine.from_config(cfg)
    engine.save(directory)
    engine.close()
    return directory


@pytest.fixture(scope="session")
def small_engine(tmp_path_factory) -> Path:
    return build_engine(tmp_path_factory.mktemp("engine") / "small")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`ltrr serve` in a subprocess on a free loopback port."""

    def __init__(self, engine_dir: Path, state_dir: Path, *args: str, token: str | None = TOKEN,
                 workers: int = 1, dsn: str | None = None):
        self.engine_dir, self.state_dir, self.workers = engine_dir, state_dir, workers
        self.args = (*args, "--dsn", dsn) if dsn else args
        self.token = token
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = state_dir.parent / f"server-{self.port}.log"

    def start(self, timeout: float = 60.0) -> Server:
        return self.launch().wait_ready(timeout)

    def launch(self) -> Server:
        """Start the process without waiting (several replicas load at the same time)."""
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        env.pop("LTRR_TOKEN", None)
        if self.token:
            env["LTRR_TOKEN"] = self.token
        self.state_dir.parent.mkdir(parents=True, exist_ok=True)
        self._log_fh = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ltrr.cli", "serve", "--engine", str(self.engine_dir), "--state",
             str(self.state_dir), "--port", str(self.port), "--workers", str(self.workers), *self.args],
            env=env, stdout=self._log_fh, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_ready(self, timeout: float = 60.0) -> Server:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        ready: set[int] = set()  # workers load in the background: wait until each one is ready
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                r = httpx.get(self.url + "/readyz", timeout=1.0)
                if r.status_code == 200:
                    ready.add(r.json()["pid"])
                    if len(ready) >= self.workers:
                        return self
                    continue
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"server not ready after {timeout} s: {self.log.read_text()[-3000:]}")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def stop(self) -> None:
        """Graceful shutdown (SIGTERM to the process group): the learner writes a final snapshot."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        self._log_fh.close()

    def kill(self) -> None:
        """kill -9 of every process of the server (no shutdown code runs)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self._log_fh.close()


@pytest.fixture
def pg_dsn() -> str:
    """A fresh, empty database on a real PostgreSQL server started for the test session."""
    if find_pg_bin() is None:
        pytest.skip("no PostgreSQL server binaries (initdb/pg_ctl/postgres) on this machine")
    return shared_server().new_database()


@pytest.fixture
def server_factory(tmp_path):
    servers: list[Server] = []

    def make(engine_dir: Path, *args: str, state: str = "state", **kw) -> Server:
        s = Server(engine_dir, tmp_path / state, *args, **kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        if s.proc and s.proc.poll() is None:
            s.kill()
