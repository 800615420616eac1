"""Scaling benchmark: build, memory, search, save and load at 10k / 100k / 1M synthetic items.

Data: seeded synthetic catalogs, title (2-6 tokens) + text (30-120 tokens) whose words follow a
Zipf law over a fixed vocabulary; queries are 2-5 words from the same law, deduplicated (every
query is new to the index: cold). Generated once per size into ``runs/scale/`` (git-ignored) as
a columnar catalog (``Catalog.save``).

Each measurement runs in a fresh subprocess, so peak RSS is that of one size and one strategy:

* ``build``: ``Catalog.load`` + fit (wall and CPU), peak RSS, search p50/p99 at depth 100
  (single queries, single thread), save time and size;
* ``load``: a new process that loads the saved catalog + index (page cache warm: just written),
  RSS after load and after the queries, search p50/p99;
* ``engine`` (``--engine``): a BM25-only ``Engine.from_config`` on the catalog (features and
  ranker included), peak RSS and ``Engine.search`` p50/p99;
* peers (``--peers bm25s``): bm25s on its default backend, same data and queries, build, RSS,
  search, save (``save``) and memory-mapped load (``load(mmap=True)``).

Strategies are entries of ``STRATEGIES`` (name -> builder): adding dense or XR-Linear is one
entry. Prints one JSON line per result with the conditions (versions, threads, load average,
sizes, repeats, cache state), then growth exponents between successive sizes
(``log(m2 / m1) / log(n2 / n1)``) per metric.

    python benchmarks/scale.py [--sizes 10000 100000 1000000] [--peers bm25s] [--engine]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from importlib.metadata import PackageNotFoundError, version  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.conditions import peak_rss_mb  # noqa: E402
from ltrr.catalog import Catalog  # noqa: E402

VOCAB = 200_000
EXPONENT = 1.1
DEPTH = 100
_TOKEN = re.compile(r"\w+")


# ---------------------------------------------------------------------------- data
def _zipf(n: int, rng: np.random.Generator) -> np.ndarray:
    weights = 1.0 / np.arange(1, VOCAB + 1) ** EXPONENT
    cdf = np.cumsum(weights / weights.sum())
    return np.minimum(np.searchsorted(cdf, rng.random(n)), VOCAB - 1)


def _records(n_items: int, seed: int, chunk: int = 50_000):
    rng = np.random.default_rng(np.random.SeedSequence([seed, n_items]))
    words = np.array([f"w{i}" for i in range(VOCAB)], dtype=object)
    for start in range(0, n_items, chunk):
        m = min(chunk, n_items - start)
        t_len, x_len = rng.integers(2, 7, size=m), rng.integers(30, 121, size=m)
        t_words, x_words = words[_zipf(int(t_len.sum()), rng)], words[_zipf(int(x_len.sum()), rng)]
        t_end, x_end = np.cumsum(t_len), np.cumsum(x_len)
        pop = rng.pareto(1.5, size=m)
        for i in range(m):
            yield {"id": f"i{start + i}", "title": " ".join(t_words[t_end[i] - t_len[i]:t_end[i]]),
                   "text": " ".join(x_words[x_end[i] - x_len[i]:x_end[i]]), "popularity": float(pop[i])}


def make_data(root: Path, n_items: int, n_queries: int, seed: int) -> Path:
    """Catalog and queries for one size (generated once; the directory name holds the recipe)."""
    where = root / f"zipf{VOCAB}-{EXPONENT}-n{n_items}-s{seed}"
    if (where / "catalog" / "manifest.json").exists() and (where / "queries.json").exists():
        return where
    Catalog.from_records(_records(n_items, seed)).save(where / "catalog")
    rng = np.random.default_rng(np.random.SeedSequence([seed, n_items, 1]))
    queries: dict[str, None] = {}
    while len(queries) < n_queries:
        q = " ".join(f"w{r}" for r in _zipf(int(rng.integers(2, 6)), rng))
        queries.setdefault(q)
    (where / "queries.json").write_text(json.dumps(list(queries)))
    return where


# ---------------------------------------------------------------------------- measuring
def conditions() -> dict:
    def ver(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {"python": sys.version.split()[0], "numpy": np.__version__, "scipy": ver("scipy"),
            "bm25s": ver("bm25s"), "threads": {v: os.environ.get(v) for v in (
                "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")},
            "cpus": os.cpu_count()}


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")




def latencies(fn: Callable[[str], object], queries: list[str]) -> dict:
    """Wall and CPU (``thread_time``) p50/p99 ms and mean CPU ms over single-query calls
    (distinct queries); on a shared machine the CPU figures are the comparable ones."""
    wall, cpu = np.empty(len(queries)), np.empty(len(queries))
    for i, q in enumerate(queries):
        t0, c0 = time.perf_counter(), time.thread_time()
        fn(q)
        wall[i], cpu[i] = time.perf_counter() - t0, time.thread_time() - c0
    return {"p50_ms": round(float(np.percentile(wall, 50)) * 1e3, 3),
            "p99_ms": round(float(np.percentile(wall, 99)) * 1e3, 3),
            "cpu_p50_ms": round(float(np.percentile(cpu, 50)) * 1e3, 3),
            "cpu_p99_ms": round(float(np.percentile(cpu, 99)) * 1e3, 3),
            "mean_cpu_ms": round(float(cpu.mean()) * 1e3, 3)}


def dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def _bm25(catalog: Catalog):
    from strategies.bm25 import BM25

    return BM25({"text_fields": ["title", "text"]}).fit(catalog)


def _bm25_load(path: Path):
    from strategies.bm25 import BM25

    return BM25.load(path)


#: name -> (fit(catalog), load(dir)); a strategy offers retrieve(queries, k) and save(dir)
STRATEGIES: dict[str, tuple[Callable, Callable]] = {"bm25": (_bm25, _bm25_load)}


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


# ---------------------------------------------------------------------------- workers
def _import(strategy: str) -> None:
    """Import the strategy's module before any clock starts (imports are not load time)."""
    importlib.import_module(f"strategies.{strategy}")


def work_build(data: Path, strategy: str, out: Path) -> dict:
    _import(strategy)
    queries = json.loads((data / "queries.json").read_text())
    w0, c0 = time.perf_counter(), time.process_time()
    catalog = Catalog.load(data / "catalog")
    t_cat = time.perf_counter() - w0
    model = STRATEGIES[strategy][0](catalog)
    build = {"wall_s": round(time.perf_counter() - w0, 2), "cpu_s": round(time.process_time() - c0, 2),
             "catalog_load_s": round(t_cat, 3)}
    peak = peak_rss_mb()
    search = latencies(lambda q: model.retrieve([q], DEPTH), queries)
    t0 = time.perf_counter()
    model.save(out / "index")
    t_save = time.perf_counter() - t0
    t0 = time.perf_counter()
    catalog.save(out / "catalog")
    t_cat_save = time.perf_counter() - t0
    return {"phase": "build", "build": build, "peak_rss_mb": round(peak, 1), "rss_mb": round(rss_mb(), 1),
            "search": search, "save_s": {"index": round(t_save, 2), "catalog": round(t_cat_save, 2)},
            "saved_mb": {"index": round(dir_mb(out / "index"), 1), "catalog": round(dir_mb(out / "catalog"), 1)}}


def work_load(data: Path, strategy: str, out: Path) -> dict:
    _import(strategy)
    queries = json.loads((data / "queries.json").read_text())
    base = rss_mb()
    t0 = time.perf_counter()
    catalog = Catalog.load(out / "catalog")
    t_cat = time.perf_counter() - t0
    model = STRATEGIES[strategy][1](out / "index")
    t_all = time.perf_counter() - t0
    after_load = rss_mb()
    search = latencies(lambda q: model.retrieve([q], DEPTH), queries)
    ids = [catalog.ids[int(r)] for r in model.retrieve([queries[0]], 10).ids[0] if r >= 0]
    return {"phase": "load", "load_s": {"catalog": round(t_cat, 3), "catalog+index": round(t_all, 3)},
            "rss_mb": {"interpreter": round(base, 1), "after_load": round(after_load, 1),
                       "after_queries": round(rss_mb(), 1)},
            "peak_rss_mb": round(peak_rss_mb(), 1), "search": search, "first_query_top_ids": ids[:3],
            "cache": "page cache warm (files just written by the build phase)"}


def work_engine(data: Path, strategy: str, out: Path) -> dict:
    from ltrr.config import DEFAULT_CONFIG, parse_config
    from ltrr.engine import Engine

    queries = json.loads((data / "queries.json").read_text())
    cfg = dict(DEFAULT_CONFIG)
    cfg["catalog"] = {"path": str(data / "catalog"), "text_fields": ["title", "text"]}
    cfg["strategies"] = [{"name": strategy, "depths": [DEPTH], "params": {"text_fields": ["title", "text"]}}]
    cfg["store"] = {"events_path": str(out / "events.sqlite")}
    w0, c0 = time.perf_counter(), time.process_time()
    catalog = Catalog.load(data / "catalog")
    engine = Engine.from_config(parse_config(cfg, "<scale benchmark>"), catalog=catalog)
    build = {"wall_s": round(time.perf_counter() - w0, 2), "cpu_s": round(time.process_time() - c0, 2)}
    search = latencies(lambda q: engine.search(q), queries)
    return {"phase": "engine", "build": build, "peak_rss_mb": round(peak_rss_mb(), 1),
            "rss_mb": round(rss_mb(), 1), "search": search}


def work_bm25s(data: Path, strategy: str, out: Path) -> dict:
    import bm25s

    queries = json.loads((data / "queries.json").read_text())
    w0, c0 = time.perf_counter(), time.process_time()
    catalog = Catalog.load(data / "catalog")
    corpus = [tokenize(t) for chunk in catalog.compose_chunks(("title", "text")) for t in chunk]
    model = bm25s.BM25(k1=1.5, b=0.75, method="robertson")  # default backend
    model.index(corpus, show_progress=False)
    del corpus
    build = {"wall_s": round(time.perf_counter() - w0, 2), "cpu_s": round(time.process_time() - c0, 2)}
    peak = peak_rss_mb()
    search = latencies(lambda q: model.retrieve([tokenize(q)], k=DEPTH, show_progress=False), queries)
    t0 = time.perf_counter()
    model.save(str(out / "bm25s"))
    t_save = time.perf_counter() - t0
    return {"phase": "build", "build": build, "peak_rss_mb": round(peak, 1), "rss_mb": round(rss_mb(), 1),
            "search": search, "save_s": {"index": round(t_save, 2)},
            "saved_mb": {"index": round(dir_mb(out / "bm25s"), 1)}}


def work_bm25s_load(data: Path, strategy: str, out: Path) -> dict:
    import bm25s

    queries = json.loads((data / "queries.json").read_text())
    base = rss_mb()
    t0 = time.perf_counter()
    model = bm25s.BM25.load(str(out / "bm25s"), mmap=True)
    t_load = time.perf_counter() - t0
    after_load = rss_mb()
    search = latencies(lambda q: model.retrieve([tokenize(q)], k=DEPTH, show_progress=False), queries)
    return {"phase": "load", "load_s": {"index": round(t_load, 3)},
            "rss_mb": {"interpreter": round(base, 1), "after_load": round(after_load, 1),
                       "after_queries": round(rss_mb(), 1)},
            "peak_rss_mb": round(peak_rss_mb(), 1), "search": search,
            "cache": "page cache warm (files just written by the build phase)"}


WORKERS = {"build": work_build, "load": work_load, "engine": work_engine,
           "bm25s": work_bm25s, "bm25s-load": work_bm25s_load}


# ---------------------------------------------------------------------------- driver
def run_worker(mode: str, data: Path, strategy: str, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", mode, "--data", str(data), "--strategy", strategy,
           "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"phase": mode, "error": proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def exponents(results: list[dict]) -> None:
    """Growth exponent of each metric between successive sizes, per (system, phase)."""
    metrics = {"build_s": lambda r: r.get("build", {}).get("wall_s"),
               "peak_rss_mb": lambda r: r.get("peak_rss_mb"),
               "search_p50_ms": lambda r: r.get("search", {}).get("p50_ms"),
               "search_cpu_ms": lambda r: r.get("search", {}).get("mean_cpu_ms"),
               "saved_mb": lambda r: sum((r.get("saved_mb") or {}).values()) or None,
               "load_s": lambda r: max((r.get("load_s") or {}).values(), default=None)}
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["system"], r["phase"]), []).append(r)
    for (system, phase), rows in groups.items():
        rows.sort(key=lambda r: r["n_items"])
        for a, b in zip(rows[:-1], rows[1:], strict=False):
            out = {}
            for name, get in metrics.items():
                va, vb = get(a), get(b)
                if va and vb and va > 0 and vb > 0:
                    out[name] = round(math.log(vb / va) / math.log(b["n_items"] / a["n_items"]), 2)
            if out:
                print(json.dumps({"metric": "growth_exponent", "system": system, "phase": phase,
                                  "from": a["n_items"], "to": b["n_items"], **out}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--strategies", nargs="+", default=["bm25"], choices=sorted(STRATEGIES))
    parser.add_argument("--peers", nargs="*", default=["bm25s"], choices=["bm25s"])
    parser.add_argument("--engine", action="store_true", help="also measure a BM25-only Engine")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", type=Path, default=ROOT / "runs" / "scale")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--strategy", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args.data, args.strategy, args.out)))
        return
    results = []
    for n in args.sizes:
        t0 = time.perf_counter()
        data = make_data(args.root / "data", n, args.queries, args.seed)
        gen_s = time.perf_counter() - t0
        plan = [(s, ["build", "load"] + (["engine"] if args.engine else [])) for s in args.strategies]
        plan += [(p, [p, f"{p}-load"]) for p in args.peers]
        for system, phases in plan:
            out = Path(tempfile.mkdtemp(prefix=f"{system}-{n}-", dir=args.root))
            try:
                for mode in phases:
                    load_start = os.getloadavg()
                    res = run_worker(mode, data, system, out)
                    phase = {"bm25s": "build", "bm25s-load": "load"}.get(mode, res.get("phase", mode))
                    row = {"benchmark": "scale", "system": system, **{**res, "phase": phase},
                           "n_items": n, "n_queries": args.queries, "depth": DEPTH, "repeats": 1,
                           "data": data.name, "data_generation_s": round(gen_s, 1),
                           "load_avg_start": load_start, "load_avg_end": os.getloadavg(), **conditions()}
                    results.append(row)
                    print(json.dumps(row), flush=True)
            finally:
                shutil.rmtree(out, ignore_errors=True)
    exponents([r for r in results if "error" not in r])


if __name__ == "__main__":
    main()
