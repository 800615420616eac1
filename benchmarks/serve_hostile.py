"""Hostile and careless clients against `ltrr serve`, case by case (issue 17), on loopback only.

Runs each case against a server started from the source tree ``--tree`` (default: this one), so
the same script measures the code before and after a change: point ``--tree`` at a checkout of
the older commit. Prints one JSON line per case with what was observed. Bounded: every socket
and request has a deadline; the slow-client case holds ``--sockets`` connections for
``--hold`` seconds.

    python benchmarks/serve_hostile.py                       # this tree
    git archive OLD | tar -x -C /tmp/old && python benchmarks/serve_hostile.py --tree /tmp/old
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HOST = "127.0.0.1"
TOKEN = "hostile-bench-token"
ROOT = Path(__file__).resolve().parents[1]
SMALL = {
    "seed": 0,
    "catalog": {"path": str(ROOT / "data" / "movies" / "catalog.jsonl"), "limit": 300,
                "text_fields": ["title", "directors", "cast", "genres", "year"]},
    "strategies": [{"name": "bm25", "depths": [0, 10, 30]}, {"name": "memory", "depths": [0, 10]}],
    "policy": {"type": "epsilon_greedy", "params": {"epsilon": 0.2}, "budget": 100,
               "plans": [{"bm25": 10, "memory": 0}, {"bm25": 30, "memory": 0}, {"bm25": 10, "memory": 10}]},
    "ranker": {"retrain_every": 0},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Tree:
    """A source tree of ltrr: builds engines and starts servers with its code."""

    def __init__(self, path: Path):
        self.path = path
        self.env = {**os.environ, "PYTHONPATH": str(path), "HF_HUB_OFFLINE": "1"}
        self.env.pop("LTRR_TOKEN", None)

    def build(self, out: Path, **overrides) -> Path:
        code = ("import json, sys; from ltrr.config import parse_config; from ltrr.engine import Engine; "
                "e = Engine.from_config(parse_config(json.loads(sys.argv[1]), '<bench>')); "
                "e.save(sys.argv[2]); e.close()")
        subprocess.run([sys.executable, "-c", code, json.dumps({**SMALL, **overrides}), str(out)],
                       env=self.env, cwd=self.path, check=True, capture_output=True, timeout=600)
        return out

    def serve(self, engine: Path, state: Path, *args: str, token: str | None = TOKEN,
              log: Path | None = None) -> Server:
        return Server(self, engine, state, args, token, log or state.parent / f"{state.name}.log")


class Server:
    def __init__(self, tree: Tree, engine: Path, state: Path, args: tuple[str, ...], token: str | None, log: Path):
        self.port = free_port()
        env = dict(tree.env)
        if token is not None:
            env["LTRR_TOKEN"] = token
        self.log = log
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ltrr.cli", "serve", "--engine", str(engine), "--state", str(state),
             "--host", HOST, "--port", str(self.port), *args],
            env=env, cwd=tree.path, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)

    def request(self, method: str, path: str, body: bytes | None = None, auth: bool = True,
                timeout: float = 30) -> tuple[int | None, str]:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {TOKEN}"
        try:
            c = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
            c.request(method, path, body, headers)
            r = c.getresponse()
            text = r.read().decode(errors="replace")
            c.close()
            return r.status, text
        except OSError as exc:
            return None, type(exc).__name__

    def post(self, path: str, obj: object, auth: bool = True) -> tuple[int | None, dict | str]:
        status, text = self.request("POST", path, json.dumps(obj).encode(), auth)
        try:
            return status, json.loads(text)
        except json.JSONDecodeError:
            return status, text

    def wait_ready(self, timeout: float = 180) -> list[str]:
        """Poll /readyz every 20 ms until 200; returns what each poll saw before that."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            status, _ = self.request("GET", "/readyz", timeout=2)
            if status == 200:
                return seen
            if not seen or seen[-1] != str(status):
                seen.append(str(status))
            time.sleep(0.02)
        raise RuntimeError("server not ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def case_reload_then_feedback(tree: Tree, tmp: Path) -> dict:
    engine = tree.build(tmp / "e1")
    s = tree.serve(engine, tmp / "s1")
    try:
        s.wait_ready()
        _, page = s.post("/search", {"query": "drama"})
        tree.build(engine, context_features=["bias", "n_tokens", "n_chars"])
        reload_status, _ = s.post("/admin/reload", {})
        answers = []
        for _ in range(10):
            status, body = s.post("/feedback", {"event_id": page["event_id"], "events": [{"item": page["results"][0]["id"]}]})
            answers.append(status)
        time.sleep(1.0)
        _, st = s.request("GET", "/admin/status")
        _, metrics = s.request("GET", "/metrics")
    finally:
        s.stop()
    acked_applied = sum(1 for a in answers if a == 200)
    errors = re.findall(r"^ltrr_journal_apply_errors_total\{[^}]*\} (\S+)$", metrics, re.M)
    return {"case": "feedback after /admin/reload to another context size", "reload": reload_status,
            "feedback_statuses": sorted(set(answers)), "acknowledged": acked_applied,
            "example": body if isinstance(body, dict) else str(body)[:200],
            "policy_n_updates": json.loads(st)["policy"]["n_updates"],
            "journal_apply_errors": float(errors[0]) if errors else 0.0}


def case_big_context(tree: Tree, tmp: Path) -> dict:
    engine = tree.build(tmp / "e2")
    s = tree.serve(engine, tmp / "s2")
    try:
        s.wait_ready()
        before = dir_bytes(tmp / "s2")
        # 60 keys (within the old 64-key cap) of 15,000 characters: ~0.9 MB, under the 1 MiB body limit
        context = {f"k{i:02d}": "v" * 15_000 for i in range(60)}
        statuses = []
        t0 = time.monotonic()
        for _ in range(40):
            status, _ = s.post("/search", {"query": "drama", "context": context}, auth=False)
            statuses.append(status)
        elapsed = time.monotonic() - t0
        time.sleep(0.5)
        grown = dir_bytes(tmp / "s2") - before
        blank, _ = s.post("/search", {"query": "   "}, auth=False)
    finally:
        s.stop()
    return {"case": "40 anonymous /search calls with a ~0.9 MB context (60 keys)", "statuses": sorted(set(statuses)),
            "event_log_growth_mb": round(grown / 1e6, 1), "seconds": round(elapsed, 1),
            "whitespace_query_status": blank}


def case_slow_clients(tree: Tree, tmp: Path, n: int, hold: float) -> dict:
    engine = tree.build(tmp / "e3")
    s = tree.serve(engine, tmp / "s3")
    socks: list[socket.socket] = []
    stop = threading.Event()
    try:
        s.wait_ready()
        for i in range(n):
            c = socket.create_connection((HOST, s.port), timeout=10)
            if i % 2:
                c.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\n")
            else:
                c.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 100000\r\n\r\n{\"query\": \"")
            socks.append(c)

        def dribble() -> None:
            while not stop.wait(1.0):
                for c in socks:
                    with contextlib.suppress(OSError):
                        c.send(b"a")

        t = threading.Thread(target=dribble, daemon=True)
        t.start()
        time.sleep(1.0)
        during, _ = s.post("/search", {"query": "drama"}, auth=False)
        time.sleep(max(hold - 1.0, 0))
        stop.set()
        t.join()
        held = answered = 0
        for c in socks:
            c.setblocking(False)
            got = b""
            try:
                while chunk := c.recv(65536):  # a 503 answer may wait unread before the close
                    got += chunk
                # recv returned b"": closed by the server
            except BlockingIOError:
                held += 1  # still open: nothing more to read and no end of stream
            except OSError:
                pass
            answered += got.startswith(b"HTTP/1.1 503")
        after, _ = s.post("/search", {"query": "drama"}, auth=False)
    finally:
        stop.set()
        for c in socks:
            c.close()
        s.stop()
    return {"case": f"{n} slow sockets (partial headers or bodies, a byte a second)", "held_after_s": hold,
            "still_open": held, "answered_503_then_closed": answered, "search_during_attack": during,
            "search_after": after}


def case_openapi(tree: Tree, tmp: Path) -> dict:
    engine = tree.build(tmp / "e4")
    s = tree.serve(engine, tmp / "s4")
    try:
        s.wait_ready()
        _, text = s.request("GET", "/openapi.json")
    finally:
        s.stop()
    spec = json.loads(text)
    documented = {f"{m.upper()} {p}": sorted(op.get("responses", {})) for p, ops in spec["paths"].items()
                  for m, op in ops.items()}
    return {"case": "statuses the OpenAPI document lists", "documented": documented}


def case_reload_errors(tree: Tree, tmp: Path) -> dict:
    engine = tree.build(tmp / "e5")
    s = tree.serve(engine, tmp / "s5")
    try:
        s.wait_ready()
        shutil.move(engine, tmp / "e5-moved")
        missing, body1 = s.post("/admin/reload", {})
        shutil.move(tmp / "e5-moved", engine)
        (engine / "manifest.json").write_text(json.dumps({"type": "engine", "format_version": 1,
                                                          "checksums": {"x.npy": "0"}}))
        broken, body2 = s.post("/admin/reload", {})
    finally:
        s.stop()
    leak = [b for b in (body1, body2) if re.search(r"(?<![\w.])/(tmp|work|root|home|usr|srv)/", json.dumps(b))]
    return {"case": "reload errors", "missing_dir": missing, "broken_dir": broken,
            "bodies_with_absolute_paths": len(leak), "examples": [str(body1)[:160], str(body2)[:160]]}


def case_start(tree: Tree, tmp: Path) -> dict:
    engine = tree.build(tmp / "e6")
    (tmp / "s6").mkdir()
    orphan = tmp / "s6" / ".snapshot.tmp-orphan123"
    (orphan / "policy").mkdir(parents=True)
    s = tree.serve(engine, tmp / "s6", "--workers", "2", "--log-level", "info")
    try:
        seen = s.wait_ready()
        time.sleep(3.0)  # the second worker loads too (a worker still loading has no engine labels yet)
        _, metrics = s.request("GET", "/metrics")
    finally:
        s.stop()
    log = s.log.read_text()
    families = re.findall(r"^# TYPE (\S+) counter$", metrics, re.M)
    empty = [f for f in families if not re.search(rf"^{f}(\{{|\s)", metrics, re.M)]
    ltrr_lines = re.findall(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\S* )?(\w+ )?\[pid (\d+)\] ltrr\.", log, re.M)
    return {"case": "start: readiness, logs, counters, orphaned snapshot temp dir",
            "readyz_before_200": seen, "ltrr_log_lines_with_time_and_pid": len(ltrr_lines),
            "workers_logging": len({m[2] for m in ltrr_lines}),
            "counter_families_without_sample": len(empty), "counter_families": len(families),
            "orphan_removed": not orphan.exists()}


def case_blank_token(tree: Tree, tmp: Path) -> dict:
    engine = tree.build(tmp / "e7")
    env = {**tree.env, "LTRR_TOKEN": "   "}
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ltrr.cli", "serve", "--engine", str(engine), "--state",
                             str(tmp / "s7"), "--host", "0.0.0.0", "--port", str(port)], env=env, cwd=tree.path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=15)
        started = False
    except subprocess.TimeoutExpired:  # still running: it accepted the blank token
        started = True
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    return {"case": "LTRR_TOKEN='   ' with --host 0.0.0.0", "server_started": started,
            "message": out.decode(errors="replace").strip().splitlines()[-1][:160] if out else ""}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", type=Path, default=ROOT, help="Source tree whose ltrr serves.")
    ap.add_argument("--sockets", type=int, default=400)
    ap.add_argument("--hold", type=float, default=40.0, help="Seconds the slow sockets are held.")
    ap.add_argument("--cases", nargs="+", default=["reload", "context", "slow", "openapi", "reload_errors",
                                                    "start", "token"])
    args = ap.parse_args()
    if not 1 <= args.sockets <= 1000 or not 1 <= args.hold <= 120:
        raise SystemExit("--sockets must be in [1, 1000] and --hold in [1, 120]")
    tree = Tree(args.tree.resolve())
    commit = subprocess.run(["git", "-C", str(tree.path), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or tree.path.name
    cases = {"reload": case_reload_then_feedback, "context": case_big_context,
             "slow": lambda t, d: case_slow_clients(t, d, args.sockets, args.hold), "openapi": case_openapi,
             "reload_errors": case_reload_errors, "start": case_start, "token": case_blank_token}
    with tempfile.TemporaryDirectory(prefix="ltrr-hostile-") as tmp:
        for name in args.cases:
            d = Path(tmp) / name
            d.mkdir()
            load0 = os.getloadavg()[0]
            res = cases[name](tree, d)
            print(json.dumps({"bench": "serve-hostile", "tree": commit, **res,
                              "load_average": [round(load0, 2), round(os.getloadavg()[0], 2)]}), flush=True)


if __name__ == "__main__":
    main()
