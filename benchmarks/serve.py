"""Load test of `ltrr serve` on loopback: throughput, latency percentiles, errors, per-stage times.

Starts the service as a subprocess on 127.0.0.1 (never another host) against the demo engine
(every strategy of the default config), then for each worker count runs an open-loop load at a
fixed request rate for ``--duration`` seconds: searches drawn from the simulated movie query
stream, feedback (a click on a shown result) for 10% of them. Latency is measured from each
request's *scheduled* start, so a server that falls behind is charged for the queueing
(no coordinated omission). The run is bounded: at most rate x duration searches, a hard wall
clock limit, then the server is stopped. Prints one JSON line per (workers) result.

There is no reference HTTP implementation of this loop to compare against, so unlike the other
benchmarks this one reports absolute numbers against the issue's target (>= 200 searches/s with
p99 <= 50 ms and zero errors on 2 cores).

    .venv/bin/python benchmarks/serve.py --duration 60 --rate 200 --workers 1 2
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# benchmarks/policies.py would shadow the `policies` package: put the repo first, drop this folder
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
HOST = "127.0.0.1"
TOKEN = "bench-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def build_demo_engine(out: Path) -> Path:
    from ltrr.config import default_config
    from ltrr.engine import Engine

    engine = Engine.from_config(default_config())
    engine.save(out)
    engine.close()
    return out


def queries(n: int, seed: int) -> list[str]:
    from ltrr.catalog import Catalog
    from ltrr.config import default_config
    from simulators.movies import MovieQueryGenerator

    cfg = default_config()
    gen = MovieQueryGenerator(Catalog.from_jsonl(cfg.catalog.path), seed=seed)
    return [q.text for q in gen.stream(n, max(n // 4, 1), seed=seed)]


class Conn(threading.local):
    """One keep-alive HTTP/1.1 connection per load thread (light on the shared CPUs)."""

    def __init__(self, port: int):
        self.port = port
        self.c: http.client.HTTPConnection | None = None

    def post(self, path: str, body: dict, headers: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        for attempt in range(2):
            if self.c is None:
                self.c = http.client.HTTPConnection(HOST, self.port, timeout=30)
            try:
                self.c.request("POST", path, data, hdrs)
                r = self.c.getresponse()
                return r.status, json.loads(r.read() or b"{}")
            except (ConnectionError, http.client.HTTPException):
                self.c.close()
                self.c = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def start_server(engine: Path, state: Path, workers: int, log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "LTRR_TOKEN": TOKEN, "HF_HUB_OFFLINE": "1"}
    fh = log.open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "ltrr.cli", "serve", "--engine", str(engine), "--state",
                             str(state), "--host", HOST, "--port", str(port), "--workers", str(workers)],
                            env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            c = http.client.HTTPConnection(HOST, port, timeout=2)
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                c.close()
                # with several workers, each must have loaded its engine: probe until all answer
                time.sleep(2.0 if workers > 1 else 0.2)
                return proc, port
        except OSError:
            pass
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError("server did not become ready")


def group_cpu_seconds(pgid: int) -> float:
    """User+system CPU seconds of every live process in the server's process group (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after "comm)": state ppid pgrp ... utime(11) stime(12)
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def run_load(port: int, texts: list[str], rate: float, duration: float, threads: int, seed: int) -> dict:
    n = int(rate * duration)
    rng = np.random.default_rng(seed)
    give_feedback = rng.random(n) < 0.10
    click_pos = rng.integers(0, 3, n)
    conn = Conn(port)
    lat = np.full(n, np.nan)  # from the scheduled start (includes queueing when behind)
    svc = np.full(n, np.nan)  # from the moment the request was sent
    fb_lat: list[float] = []
    errors: list[str] = []
    stages: dict[str, list[float]] = {}
    lock = threading.Lock()
    t0 = time.perf_counter() + 0.5
    # bounded in time too: a request that cannot start within 5 s after the load window (the
    # server fell behind) is not sent, and is counted as unsent
    hard_stop = t0 + duration + 5.0
    unsent = [0]

    def one(i: int) -> None:
        sched = t0 + i / rate
        delay = sched - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        if time.perf_counter() > hard_stop:
            with lock:
                unsent[0] += 1
            return
        try:
            sent = time.perf_counter()
            status, body = conn.post("/search", {"query": texts[i % len(texts)], "k": 10})
            lat[i] = time.perf_counter() - sched
            svc[i] = time.perf_counter() - sent
            if status != 200:
                with lock:
                    errors.append(f"search {status}: {body.get('detail')}")
                return
            with lock:
                for k, v in body["timings_ms"].items():
                    stages.setdefault(k, []).append(v)
            if give_feedback[i]:
                res = body["results"]
                events = [{"item": res[min(click_pos[i], len(res) - 1)]["id"], "position": int(min(click_pos[i], len(res) - 1))}] if res else []
                f0 = time.perf_counter()
                fstatus, fbody = conn.post("/feedback", {"event_id": body["event_id"], "events": events},
                                           {"Authorization": f"Bearer {TOKEN}"})
                with lock:
                    fb_lat.append(time.perf_counter() - f0)
                    if fstatus != 200:
                        errors.append(f"feedback {fstatus}: {fbody.get('detail')}")
        except Exception as exc:  # counted, reported
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(n)))
    wall = time.perf_counter() - max(start, t0)
    ok = lat[~np.isnan(lat)] * 1e3
    fb = np.asarray(fb_lat) * 1e3
    return {
        "target_rps": rate, "duration_s": duration, "searches": n,
        "searches_per_s": round(len(ok) / wall, 1),
        "p50_ms": round(float(np.percentile(ok, 50)), 2) if ok.size else None,
        "p99_ms": round(float(np.percentile(ok, 99)), 2) if ok.size else None,
        "max_ms": round(float(ok.max()), 2) if ok.size else None,
        "service_p50_ms": round(float(np.nanpercentile(svc, 50) * 1e3), 2) if ok.size else None,
        "service_p99_ms": round(float(np.nanpercentile(svc, 99) * 1e3), 2) if ok.size else None,
        "errors": len(errors), "error_examples": sorted(set(errors))[:3], "unsent": unsent[0],
        "feedback": {"count": int(fb.size),
                     "p50_ms": round(float(np.percentile(fb, 50)), 2) if fb.size else None,
                     "p99_ms": round(float(np.percentile(fb, 99)), 2) if fb.size else None},
        "stages_ms": {k: {"mean": round(float(np.mean(v)), 3), "p50": round(float(np.percentile(v, 50)), 3),
                          "p99": round(float(np.percentile(v, 99)), 3)} for k, v in sorted(stages.items())},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=60.0, help="Seconds of sustained load per run.")
    ap.add_argument("--rate", type=float, default=200.0, help="Searches per second (open loop).")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--threads", type=int, default=32, help="Load-generator threads.")
    ap.add_argument("--engine", type=Path, default=None, help="Saved engine (default: build the demo engine).")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.duration <= 0 or args.duration > 600 or args.rate <= 0 or args.rate > 5000:
        raise SystemExit("--duration must be in (0, 600] and --rate in (0, 5000]")
    with tempfile.TemporaryDirectory(prefix="ltrr-serve-bench-") as tmp:
        tmp = Path(tmp)
        engine = args.engine or build_demo_engine(tmp / "engine")
        texts = queries(5000, args.seed)
        for w in args.workers:
            proc, port = start_server(engine, tmp / f"state-{w}", w, tmp / f"server-{w}.log")
            try:
                run_load(port, texts, args.rate, min(args.duration, 3.0), args.threads, args.seed + 1)  # warm-up
                cpu0 = group_cpu_seconds(proc.pid)
                res = run_load(port, texts, args.rate, args.duration, args.threads, args.seed)
                cpu = group_cpu_seconds(proc.pid) - cpu0
                res["server_cpu_ms_per_search"] = round(1e3 * cpu / max(res["searches"], 1), 3)
                res["load_average_1m"] = round(os.getloadavg()[0], 2)
            finally:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
            print(json.dumps({"bench": "serve", "workers": w, "cores": os.cpu_count(), **res}), flush=True)


if __name__ == "__main__":
    main()
