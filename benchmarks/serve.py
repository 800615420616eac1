"""Load test of `ltrr serve` on loopback: throughput, latency percentiles, failures, CPU per search.

Starts the service as subprocesses on 127.0.0.1 (never another host) and, for each deployment,
runs an open-loop load at a fixed request rate for ``--duration`` seconds: searches drawn from the
simulated movie query stream — a Zipf law over ``--pool`` distinct queries, so head queries repeat
as in real logs (the run reports the resulting cache hit rate) — and feedback (a click on a shown
result) for 10% of them (``--feedback``). Latency is measured from each request's *scheduled* start, so a server
that falls behind is charged for the queueing (no coordinated omission); a request that could not
be sent in time counts as a failure. The run is bounded: at most rate x duration searches, a hard
wall clock limit, then the servers are stopped. Prints one JSON line per run and one summary line
per deployment and rate (median and spread over ``--repeats``, deployments interleaved A B C A B
C ...). ``--distinct`` sends only distinct queries (cold: every query-keyed cache misses), and
several ``--rate`` values find the highest rate whose p99 stays under a latency target.

Deployments: ``--store sqlite --workers 1 2`` (one `ltrr serve` with N worker processes on one
SQLite event log) or ``--store postgres --replicas 1 2 3`` (N separate `ltrr serve` processes, as
on N machines, sharing one PostgreSQL server started from the local binaries; a fresh database per
run; the load generator spreads requests round-robin over the replicas, as a load balancer would).

There is no reference HTTP implementation of this loop to compare against, so unlike the other
benchmarks this one reports absolute numbers, with the conditions (load average at start and end,
library versions, thread settings, CPU time of the servers and of PostgreSQL).

    .venv/bin/python benchmarks/serve.py --duration 60 --rate 200 --workers 1 2
    .venv/bin/python benchmarks/serve.py --distinct --rate 5 10 --workers 1 2 --repeats 3  # cold
    .venv/bin/python benchmarks/serve.py --store postgres --replicas 1 2 3 --repeats 3 --duration 30
    .venv/bin/python benchmarks/serve.py --schemathesis 600        # schemathesis, every check, 10 min
    .venv/bin/python benchmarks/serve.py --engine work/speed/engine --snapshots 5   # learner stalls

``--snapshots N`` measures, in this process and without a server, what the learner thread does
to a serving process besides the requests: N snapshots (``save_state``, as the learner writes
every ``snapshot_every_s``) and N adoptions of one (``load_state``, as a follower does), each
timed (wall, CPU) while a second thread wakes every millisecond and records how long it could not
run: the longest such stall is the longest the GIL was held (or the process descheduled) — the
time every search of the process waits. The engine first observes clicks, so the click memory
and the retrainable strategies have learned state to save.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
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


def build_engine(out: Path, config: Path | None, strategies: list[str] | None, policy: str | None) -> Path:
    """The engine of ``config`` (default: the demo's defaults), optionally keeping only the
    named ``strategies`` (plans without the others) and with another ``policy`` type."""
    from ltrr.config import DEFAULT_CONFIG, load_config, parse_config
    from ltrr.engine import Engine

    cfg = load_config(config) if config else parse_config(DEFAULT_CONFIG, "<default config>")
    if strategies:
        data = cfg.model_dump(mode="json")
        data["strategies"] = [sc for sc in data["strategies"] if sc["name"] in strategies]
        data["policy"]["plans"] = None
        data["context_features"] = None
        cfg = parse_config(data, "<benchmark config>")
    if policy:
        cfg = cfg.with_policy(policy)
    engine = Engine.from_config(cfg)
    engine.save(out)
    engine.close()
    return out


def query_streams(n: int, n_warm: int, pool: int, zipf: float, seed: int,
                  distinct: bool = False) -> tuple[list[str], list[str]]:
    """The measured stream and the warm-up stream: the same universe of ``pool`` distinct
    queries, Zipf-distributed over their popularity rank, in different orders; with
    ``distinct``, ``n + n_warm`` distinct queries instead (no query is sent twice: cold)."""
    from ltrr.catalog import Catalog
    from ltrr.config import default_config
    from simulators.movies import MovieQueryGenerator

    gen = MovieQueryGenerator(Catalog.from_jsonl(default_config().catalog.path), seed=seed)
    if distinct:
        texts = [q.text for q in gen.sample_pool(n + n_warm, seed=seed + 3)]
        return texts[n_warm:], texts[:n_warm]
    measured = [q.text for q in gen.stream(n, pool, seed=seed + 1, zipf_exponent=zipf)]
    warm = [q.text for q in gen.stream(n_warm, pool, seed=seed + 2, zipf_exponent=zipf)]
    return measured, warm


def hit_rates(warm: list[str], measured: list[str], n_servers: int) -> dict[str, float]:
    """Fraction of measured requests whose query was sent before (warm-up included): to any
    server (``stream``), and to the same server (``per_server``: the hit rate of a per-process
    query cache such as the dense strategy's embedding cache, unbounded at this pool size).
    Requests go to servers round-robin, as the load generator sends them."""
    seen_any: set[str] = set()
    seen: list[set[str]] = [set() for _ in range(n_servers)]
    for i, q in enumerate(warm):
        seen_any.add(q)
        seen[i % n_servers].add(q)
    hit_any = hit_one = 0
    for i, q in enumerate(measured):
        hit_any += q in seen_any
        hit_one += q in seen[i % n_servers]
        seen_any.add(q)
        seen[i % n_servers].add(q)
    n = max(len(measured), 1)
    return {"stream": round(hit_any / n, 4), "per_server": round(hit_one / n, 4)}


class Conn(threading.local):
    """One keep-alive HTTP/1.1 connection per load thread and server (light on the shared CPUs)."""

    def __init__(self) -> None:
        self.conns: dict[int, http.client.HTTPConnection] = {}

    def post(self, port: int, path: str, body: dict, headers: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        for attempt in range(2):
            c = self.conns.get(port)
            if c is None:
                c = self.conns[port] = http.client.HTTPConnection(HOST, port, timeout=30)
            try:
                c.request("POST", path, data, hdrs)
                r = c.getresponse()
                raw = r.read() or b"{}"
                try:
                    return r.status, json.loads(raw)
                except json.JSONDecodeError:
                    return r.status, {"detail": raw[:200].decode(errors="replace")}
            except (ConnectionError, http.client.HTTPException):
                c.close()
                del self.conns[port]
                if attempt:
                    raise
        raise AssertionError("unreachable")


def wait_ready(port: int, workers: int, proc: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    """Until ``workers`` distinct worker processes answered /readyz 200 (they load in the background)."""
    ready: set[int] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            c = http.client.HTTPConnection(HOST, port, timeout=2)
            c.request("GET", "/readyz")
            r = c.getresponse()
            body = r.read()
            c.close()
            if r.status == 200:
                ready.add(json.loads(body)["pid"])
                if len(ready) >= workers:
                    return
                continue
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError("server did not become ready")


class Deployment:
    """``n`` replicas (postgres: separate processes, one database) or one server with ``n``
    workers (sqlite), on free loopback ports."""

    def __init__(self, engine: Path, root: Path, store: str, n: int, dsn: str | None):
        self.procs: list[subprocess.Popen] = []
        self.ports: list[int] = []
        env = {**os.environ, "LTRR_TOKEN": TOKEN, "HF_HUB_OFFLINE": "1"}
        count, workers = (n, 1) if store == "postgres" else (1, n)
        logs = []
        for r in range(count):
            port = free_port()
            log = root / f"server-{r}.log"
            extra = ["--dsn", dsn] if dsn else []
            proc = subprocess.Popen(
                [sys.executable, "-m", "ltrr.cli", "serve", "--engine", str(engine), "--state",
                 str(root / f"state-{r}"), "--host", HOST, "--port", str(port), "--workers", str(workers), *extra],
                env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
            self.procs.append(proc)
            self.ports.append(port)
            logs.append(log)
        for proc, port, log in zip(self.procs, self.ports, logs, strict=True):
            wait_ready(port, workers, proc, log)

    def cpu_seconds(self) -> float:
        return sum(group_cpu_seconds(p.pid) for p in self.procs)

    def stop(self) -> None:
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def _proc_stat(pid_dir: Path) -> list[str] | None:
    try:
        return (pid_dir / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def group_cpu_seconds(pgid: int) -> float:
    """User+system CPU seconds of every live process in a process group (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        fields = _proc_stat(d)
        if fields and int(fields[2]) == pgid:  # fields after "comm)": state ppid pgrp ... utime(11) stime(12)
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def postgres_cpu_seconds(data_dir: Path | None) -> float:
    """CPU seconds of a PostgreSQL server: the postmaster (with its exited children) and its
    live children."""
    if data_dir is None or not (data_dir / "postmaster.pid").exists():
        return 0.0
    master = int((data_dir / "postmaster.pid").read_text().split()[0])
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        fields = _proc_stat(d)
        if fields is None:
            continue
        if int(d.name) == master:
            total += sum(int(fields[i]) for i in (11, 12, 13, 14)) / tick
        elif int(fields[1]) == master:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def run_load(ports: list[int], texts: list[str], rate: float, duration: float, threads: int, seed: int,
             feedback: float = 0.10) -> dict:
    n = min(int(rate * duration), len(texts))
    rng = np.random.default_rng(seed)
    give_feedback = rng.random(n) < feedback
    click_pos = rng.integers(0, 3, n)
    conn = Conn()
    lat = np.full(n, np.nan)  # from the scheduled start (includes queueing when behind)
    svc = np.full(n, np.nan)  # from the moment the request was sent
    fb_lat: list[float] = []
    errors: list[str] = []
    stages: dict[str, list[float]] = {}
    lock = threading.Lock()
    t0 = time.perf_counter() + 0.5
    # bounded in time too: a request that cannot start within 5 s after the load window (the
    # server fell behind) is not sent, and is counted as unsent (a failure)
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
        port = ports[i % len(ports)]
        try:
            sent = time.perf_counter()
            status, body = conn.post(port, "/search", {"query": texts[i], "k": 10})
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
                pos = int(min(click_pos[i], len(res) - 1))
                events = [{"item": res[pos]["id"], "position": pos}] if res else []
                f0 = time.perf_counter()
                fstatus, fbody = conn.post(port, "/feedback", {"event_id": body["event_id"], "events": events},
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
        "errors": len(errors), "unsent": unsent[0], "failures": len(errors) + unsent[0],
        "saturated": unsent[0] > 0, "error_examples": sorted(set(errors))[:3],
        "feedback": {"count": int(fb.size),
                     "p50_ms": round(float(np.percentile(fb, 50)), 2) if fb.size else None,
                     "p99_ms": round(float(np.percentile(fb, 99)), 2) if fb.size else None},
        "stages_ms": {k: {"mean": round(float(np.mean(v)), 3), "p50": round(float(np.percentile(v, 50)), 3),
                          "p99": round(float(np.percentile(v, 99)), 3)} for k, v in sorted(stages.items())},
    }


def conditions() -> dict:
    """Library versions and native thread settings (ltrr serve pins its pools to 1 thread)."""
    import importlib.metadata as md

    versions = {}
    for pkg in ("numpy", "scipy", "faiss-cpu", "torch", "lightgbm", "fastapi", "uvicorn", "psycopg", "psycopg-pool"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    threads = {v: os.environ.get(v, "1 (set by ltrr serve)") for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                                       "OPENBLAS_NUM_THREADS")}
    return {"python": platform.python_version(), "versions": versions, "threads": threads, "cores": os.cpu_count()}


def _summary(rows: list[dict]) -> dict:
    def med(key: str) -> float | None:
        vals = [r[key] for r in rows if r.get(key) is not None]
        return round(float(np.median(vals)), 2) if vals else None

    def spread(key: str) -> list[float]:
        vals = [r[key] for r in rows if r.get(key) is not None]
        return [round(float(min(vals)), 2), round(float(max(vals)), 2)] if vals else []

    return {"repeats": len(rows), **{f"{k}_median": med(k) for k in ("searches_per_s", "p50_ms", "p99_ms",
                                                                        "server_cpu_ms_per_search")},
            "p99_ms_range": spread("p99_ms"), "searches_per_s_range": spread("searches_per_s"),
            "failures_total": int(sum(r["failures"] for r in rows)),
            "unsent_total": int(sum(r["unsent"] for r in rows)),
            "stages_ms_p50_median": {k: round(float(np.median([r["stages_ms"][k]["p50"] for r in rows
                                                                 if k in r["stages_ms"]])), 3)
                                     for k in sorted({k for r in rows for k in r["stages_ms"]})},
            "load_average_range": [min(r["load_average"][0] for r in rows), max(r["load_average"][1] for r in rows)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=60.0, help="Seconds of sustained load per run.")
    ap.add_argument("--rate", type=float, nargs="+", default=[200.0],
                    help="Searches per second (open loop); several rates run interleaved.")
    ap.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="sqlite: worker processes per run.")
    ap.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3], help="postgres: replicas per run.")
    ap.add_argument("--repeats", type=int, default=1, help="Runs per deployment, interleaved.")
    ap.add_argument("--threads", type=int, default=32, help="Load-generator threads.")
    ap.add_argument("--engine", type=Path, default=None, help="Saved engine (default: build one from --config).")
    ap.add_argument("--config", type=Path, default=None, help="Engine config (default: the demo's defaults).")
    ap.add_argument("--strategies", nargs="+", default=None,
                    help="Keep only these strategies of the config (e.g. bm25 memory: a lighter engine).")
    ap.add_argument("--policy", default=None, help="Another policy type for the config (e.g. epsilon_greedy).")
    ap.add_argument("--pool", type=int, default=2000, help="Distinct queries in the stream.")
    ap.add_argument("--zipf", type=float, default=1.0, help="Zipf exponent over the queries' popularity rank.")
    ap.add_argument("--feedback", type=float, default=0.10,
                    help="Fraction of searches followed by a click sent to /feedback (the server learns).")
    ap.add_argument("--distinct", action="store_true",
                    help="Cold: every query distinct (warm-up included), instead of the Zipf mix.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--snapshots", type=int, default=0, metavar="N",
                    help="Instead of the load: time N learner snapshots and adoptions in-process and the "
                         "longest stall they cause other threads (needs --engine).")
    ap.add_argument("--schemathesis", type=float, default=0.0, metavar="SECONDS",
                    help="Instead of the load: schemathesis with every check against one server.")
    args = ap.parse_args()
    if not 0 < args.duration <= 600 or not all(0 < r <= 5000 for r in args.rate):
        raise SystemExit("--duration must be in (0, 600] and every --rate in (0, 5000]")
    if args.snapshots:
        if args.engine is None:
            raise SystemExit("--snapshots needs --engine (a trained engine directory)")
        snapshot_stalls(args.engine, args.snapshots, args.seed)
        return
    with tempfile.TemporaryDirectory(prefix="ltrr-serve-bench-") as tmp:
        tmp = Path(tmp)
        engine = args.engine or build_engine(tmp / "engine", args.config, args.strategies, args.policy)
        if args.schemathesis:
            run_schemathesis(engine, tmp, args.schemathesis, args.seed)
            return
        counts = args.replicas if args.store == "postgres" else args.workers
        n = int(max(args.rate) * args.duration)
        texts, warm_all = query_streams(n, int(max(args.rate) * 3.0), args.pool, args.zipf, args.seed,
                                        args.distinct)
        mix = ({"queries": "distinct (cold)"} if args.distinct
               else {"query_pool": args.pool, "zipf": args.zipf})
        mix["feedback_fraction"] = args.feedback
        pg = None
        if args.store == "postgres":
            from ltrr.store.pg_local import LocalPostgres

            pg = LocalPostgres().start()
        results: dict[tuple[int, float], list[dict]] = {(c, r): [] for r in args.rate for c in counts}
        try:
            for rep in range(args.repeats):
                for rate in args.rate:
                    for c in counts:  # interleaved: 1 2 3 1 2 3 ...
                        dsn = pg.new_database(f"bench{c}") if pg else None
                        root = tmp / f"run-{rep}-{rate:g}-{c}"
                        root.mkdir()
                        warm = warm_all[:int(rate * 3.0)]
                        load0 = os.getloadavg()[0]
                        dep = Deployment(engine, root, args.store, c, dsn)
                        try:
                            run_load(dep.ports, warm, rate, 3.0, args.threads, args.seed + 1, args.feedback)  # warm-up
                            cpu0, pg0 = dep.cpu_seconds(), postgres_cpu_seconds(pg.data if pg else None)
                            res = run_load(dep.ports, texts, rate, args.duration, args.threads, args.seed, args.feedback)
                            cpu = dep.cpu_seconds() - cpu0
                            pg_cpu = postgres_cpu_seconds(pg.data if pg else None) - pg0
                        finally:
                            dep.stop()
                        res["server_cpu_ms_per_search"] = round(1e3 * cpu / max(res["searches"], 1), 3)
                        res["postgres_cpu_ms_per_search"] = (round(1e3 * pg_cpu / max(res["searches"], 1), 3)
                                                             if pg else None)
                        res["load_average"] = [round(load0, 2), round(os.getloadavg()[0], 2)]  # 1-min, start/end
                        res["cache_hit_rate"] = hit_rates(warm, texts[:res["searches"]], c)
                        results[(c, rate)].append(res)
                        print(json.dumps({"bench": "serve", "store": args.store,
                                          ("replicas" if pg else "workers"): c, "repeat": rep, **mix, **res}),
                              flush=True)
        finally:
            if pg is not None:
                pg.stop()
        for (c, rate), rows in results.items():
            print(json.dumps({"bench": "serve-summary", "store": args.store, ("replicas" if pg else "workers"): c,
                              "target_rps": rate, **mix, **_summary(rows),
                              "cache_hit_rate": rows[0]["cache_hit_rate"],
                              "conditions": conditions()}), flush=True)


def snapshot_stalls(engine_dir: Path, n: int, seed: int) -> None:
    """``--snapshots``: see the module docstring."""
    from ltrr.engine import Engine
    from ltrr.store.engine_dir import load_state, save_state
    from ltrr.threads import set_native_threads

    set_native_threads(1)
    scratch = tempfile.TemporaryDirectory(prefix="ltrr-snapshot-bench-")
    engine = Engine.load(engine_dir, events_path=str(Path(scratch.name) / "events.sqlite"))  # the engine stays as it is
    rng = np.random.default_rng(seed)
    texts, _ = query_streams(200, 0, 2000, 1.0, seed, distinct=True)
    for text in texts:  # learned state to save: clicks observed by every learning strategy
        page = engine.search(text).page
        if page.size:
            for strat in engine.strategies.values():
                if hasattr(strat, "observe"):
                    strat.observe(text, page, page[rng.integers(0, page.size, 1)], time.time())
    gaps: list[float] = []
    stop = threading.Event()

    def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    th = threading.Thread(target=ticker, daemon=True)
    th.start()
    with scratch as tmp:
        for op in ("save_state", "load_state"):
            walls, cpus, stalls = [], [], []
            for i in range(n):
                target = Path(tmp) / f"s{i}"
                time.sleep(0.05)
                gaps.clear()
                w0, c0 = time.perf_counter(), time.thread_time()
                if op == "save_state":
                    save_state(engine, target, seq=i)
                else:
                    load_state(engine, target)
                walls.append((time.perf_counter() - w0) * 1e3)
                cpus.append((time.thread_time() - c0) * 1e3)
                stalls.append(max(gaps, default=0.0) * 1e3)
            print(json.dumps({"bench": "learner-stalls", "op": op, "repeats": n, "engine": str(engine_dir),
                              "wall_ms": [round(v, 1) for v in walls], "cpu_ms": [round(v, 1) for v in cpus],
                              "longest_stall_ms": [round(v, 1) for v in stalls],
                              "longest_stall_ms_median": round(float(np.median(stalls)), 1),
                              "learning_strategies": sorted(n for n, s in engine.strategies.items()
                                                            if hasattr(s, "observe")),
                              "load_average": [round(x, 2) for x in os.getloadavg()],
                              "conditions": conditions()}), flush=True)
        stop.set()
        engine.close()


def run_schemathesis(engine: Path, tmp: Path, seconds: float, seed: int) -> None:
    """schemathesis with every check for ``seconds`` against one server; prints its summary."""
    import re

    dep = Deployment(engine, tmp, "sqlite", 1, None)
    try:
        exe = str(Path(sys.executable).with_name("schemathesis"))
        config = ROOT / "tests" / "ltrr" / "serve" / "schemathesis.toml"
        cmd = [exe, "--config-file", str(config), "--no-color", "run", f"http://{HOST}:{dep.ports[0]}/openapi.json",
               "--checks", "all", "-H", f"Authorization: Bearer {TOKEN}", "--max-time", str(int(seconds)),
               "--workers", "2", "--request-timeout", "30", "--seed", str(seed)]
        load0 = os.getloadavg()[0]
        r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=seconds + 600)
    finally:
        dep.stop()
    out = r.stdout + r.stderr
    m = re.search(r"(\d+) generated, (.*)", out)
    print(json.dumps({"bench": "schemathesis", "seconds": seconds, "exit_code": r.returncode,
                      "summary": m.group(0).strip() if m else None,
                      "failures": re.findall(r"❌ (ST\d+ [^:]+): (\d+)", out),
                      "load_average": [round(load0, 2), round(os.getloadavg()[0], 2)]}), flush=True)
    if r.returncode:
        print(out[-8000:], file=sys.stderr)


if __name__ == "__main__":
    main()
