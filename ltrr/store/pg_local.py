"""A throwaway PostgreSQL server from the binaries installed on this machine (tests, benchmarks).

``LocalPostgres`` runs ``initdb`` in a fresh temporary directory and ``pg_ctl start`` on a free
loopback port, trust authentication on 127.0.0.1 only, no Unix socket. PostgreSQL refuses to run
as root: when this process is root, the server runs as an unprivileged system user
(``ltrr-pg``, created with ``useradd`` if missing) through ``setpriv``. Nothing is installed or
downloaded: :func:`find_pg_bin` finds the binaries (``$LTRR_PG_BIN``, then
``/usr/lib/postgresql/<version>/bin``, then ``PATH``) or says why there are none.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PG_USER = "ltrr-pg"
#: the superuser created by initdb (the DSN's user)
DB_USER = "ltrr"


def find_pg_bin() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``, or None."""
    candidates = [os.environ.get("LTRR_PG_BIN", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    which = shutil.which("pg_ctl")
    if which:
        candidates.append(str(Path(which).parent))
    for c in candidates:
        if c and all((Path(c) / exe).is_file() for exe in ("initdb", "pg_ctl", "postgres")):
            return Path(c)
    return None


def _version_key(path: str) -> tuple[int, ...]:
    part = Path(path).parent.name
    return tuple(int(p) for p in part.split(".") if p.isdigit()) or (0,)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _unprivileged_user() -> tuple[int, int]:
    """uid/gid of the system user the server runs as when we are root (created if missing)."""
    try:
        pw = pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
                       check=True, capture_output=True)
        pw = pwd.getpwnam(PG_USER)
    return pw.pw_uid, pw.pw_gid


class LocalPostgres:
    """One PostgreSQL server in a temporary directory; ``dsn`` once :meth:`start` returned."""

    def __init__(self, bin_dir: Path | None = None, *, settings: dict[str, str] | None = None):
        found = bin_dir or find_pg_bin()
        if found is None:
            raise FileNotFoundError("no PostgreSQL server binaries (initdb, pg_ctl, postgres) under "
                                    "$LTRR_PG_BIN, /usr/lib/postgresql/*/bin or PATH")
        self.bin = Path(found)
        self.settings = {"max_connections": "200", "shared_buffers": "32MB", **(settings or {})}
        # as root, under /tmp whatever $TMPDIR says: the server's user must reach its directory
        parent = "/tmp" if os.geteuid() == 0 and os.path.isdir("/tmp") else None
        self.root = Path(tempfile.mkdtemp(prefix="ltrr-pg-", dir=parent))
        self.data = self.root / "data"
        self.port = _free_port()
        self._prefix: list[str] = []
        if os.geteuid() == 0:
            uid, gid = _unprivileged_user()
            os.chown(self.root, uid, gid)
            self._prefix = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user={DB_USER} dbname=postgres"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = env["LANG"] = "C"
        return subprocess.run([*self._prefix, *args], env=env, cwd=self.root, capture_output=True, text=True,
                              timeout=timeout, check=False)

    def start(self, timeout: float = 120) -> LocalPostgres:
        r = self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", DB_USER, "--auth=trust",
                      "--no-sync", "-E", "UTF8", timeout=timeout)
        if r.returncode:
            raise RuntimeError(f"initdb failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
        opts = " ".join(f"-c {k}={v}" for k, v in {
            "listen_addresses": "127.0.0.1", "port": str(self.port), "unix_socket_directories": "''",
            **self.settings}.items())
        r = self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
                      "-o", opts, "-w", "-t", str(int(timeout)), "start", timeout=timeout + 10)
        if r.returncode:
            log = (self.root / "server.log").read_text(errors="replace")[-2000:] if (self.root / "server.log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed ({r.returncode}): {r.stderr.strip()[-1000:]} {log}")
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.dsn, connect_timeout=5) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def new_database(self, prefix: str = "t") -> str:
        """Create an empty database; returns its DSN (a test's own, isolated from the others)."""
        import psycopg

        self._n_db = getattr(self, "_n_db", 0) + 1
        name = f"{prefix}_{os.getpid()}_{self._n_db}"
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"host=127.0.0.1 port={self.port} user={DB_USER} dbname={name}"

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its directory."""
        with contextlib.suppress(Exception):
            if (self.data / "postmaster.pid").exists():
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop",
                          timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_SHARED: LocalPostgres | None = None


def shared_server() -> LocalPostgres:
    """One server for the whole test session (started on first use, stopped at exit)."""
    global _SHARED
    if _SHARED is None:
        import atexit

        server = LocalPostgres().start()
        atexit.register(server.stop)
        _SHARED = server
    return _SHARED
