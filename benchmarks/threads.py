"""Benchmark: what pinning the native thread pools (``ltrr.threads``) changes, under load.

Times single-query calls with every pool at the libraries' default size (one thread per usable
core: ``set_native_threads(0)``) and pinned to one thread (``set_native_threads(1)``, the
engine's ``threads.search`` default), interleaved (default, pinned, default, ...) for
``--repeats`` rounds of ``--calls`` calls each:

* ``faiss_flat``: exact inner-product search of one query over the movie catalog's dense vectors
  (17,470 x 384, ``DENSE_TEXT_FIELDS``), k=100, through the dense strategy's ``VectorIndex``;
* ``torch_encode`` / ``onnx_encode``: one query encoded by the MiniLM encoder's backend (distinct
  queries, no query cache).

``--burners N`` starts N busy-looping processes for the duration (stopped at the end, and by a
time limit of their own), so the contention that pinning avoids is present on an idle machine
too; the machine's own load average is recorded at start and end. Per call: wall time (p50, p99)
and the process's CPU time (every thread of this process, so OpenMP workers count). Prints one
JSON line per (operation, pool size), with the default/pinned ratios.

    .venv/bin/python benchmarks/threads.py [--burners 2] [--calls 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks.conditions import conditions, load_average  # noqa: E402
from ltrr.catalog import Catalog  # noqa: E402
from ltrr.config import DENSE_TEXT_FIELDS  # noqa: E402
from ltrr.threads import native_threads, set_native_threads, usable_cores  # noqa: E402
from simulators.movies import MovieQueryGenerator  # noqa: E402
from strategies.dense import DenseRetriever, VectorIndex  # noqa: E402
from strategies.encoder import get_encoder  # noqa: E402

MOVIES = ROOT / "data" / "movies" / "catalog.jsonl"
BURNER = "import time\nend = time.time() + {limit}\nwhile time.time() < end:\n    pass\n"


def emit(**kw) -> None:
    # 4 significant digits, so tiny differences (1e-7) stay visible
    print(json.dumps({k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in kw.items()}),
          flush=True)


def time_calls(fn, args: list) -> tuple[np.ndarray, np.ndarray]:
    """Wall and process-CPU milliseconds of ``fn(a)`` for each ``a``."""
    wall, cpu = np.empty(len(args)), np.empty(len(args))
    for i, a in enumerate(args):
        c0, w0 = time.process_time(), time.perf_counter()
        fn(a)
        wall[i] = time.perf_counter() - w0
        cpu[i] = time.process_time() - c0
    return 1e3 * wall, 1e3 * cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--burners", type=int, default=2, help="busy-looping processes during the run")
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit-s", type=float, default=900.0, help="burners stop after this long")
    args = ap.parse_args()

    movies = Catalog.from_jsonl(MOVIES)
    with native_threads(0):
        dense = DenseRetriever({"text_fields": DENSE_TEXT_FIELDS}).fit(movies)
    vectors = np.asarray(dense.embeddings_)
    index = VectorIndex(vectors.shape[1], "flat").build(vectors)
    texts = [q.text for q in MovieQueryGenerator(movies, seed=args.seed).sample_pool(
        args.calls * args.repeats * 2)]
    torch_enc, onnx_enc = get_encoder(backend="torch"), get_encoder(backend="onnx")
    qvecs = torch_enc.encode(texts[:args.calls], progress=False)
    ops = {
        "faiss_flat": lambda q: index.search(q[None, :], 100),
        "torch_encode": lambda t: torch_enc.encode([t], progress=False),
        "onnx_encode": lambda t: onnx_enc.encode([t], progress=False),
    }
    sizes = {"default": 0, "pinned": 1}
    for size in sizes.values():  # warm up every pool size and session
        set_native_threads(size)
        ops["faiss_flat"](qvecs[0])
        ops["torch_encode"](texts[0])
        ops["onnx_encode"](texts[0])

    burners = [subprocess.Popen([sys.executable, "-c", BURNER.format(limit=args.limit_s)])
               for _ in range(args.burners)]
    load_start = load_average()
    results: dict[tuple[str, str], dict[str, list[float]]] = {}
    try:
        time.sleep(1.0 if burners else 0.0)
        for r in range(args.repeats):
            for label in (("default", "pinned") if r % 2 == 0 else ("pinned", "default")):
                set_native_threads(sizes[label])
                for op, fn in ops.items():
                    if op == "faiss_flat":
                        calls = list(qvecs)
                    else:  # distinct texts per round and size: nothing is cached
                        k = 2 * r + (label == "pinned")
                        calls = texts[k * args.calls:(k + 1) * args.calls]
                    wall, cpu = time_calls(fn, calls)
                    out = results.setdefault((op, label), {"p50": [], "p99": [], "cpu": []})
                    out["p50"].append(float(np.percentile(wall, 50)))
                    out["p99"].append(float(np.percentile(wall, 99)))
                    out["cpu"].append(float(np.mean(cpu)))
                    print(f"round {r + 1}/{args.repeats} {label} {op}: p50 {out['p50'][-1]:.2f} ms, "
                          f"cpu {out['cpu'][-1]:.2f} ms", file=sys.stderr, flush=True)
        cond = conditions()
    finally:
        for p in burners:
            p.kill()
            p.wait()
    load_end = load_average()
    for op in ops:
        med = {label: {k: float(np.median(v)) for k, v in results[(op, label)].items()}
               for label in sizes}
        for label, size in sizes.items():
            res = results[(op, label)]
            emit(bench="threads", op=op, pools=label, pool_threads=size or usable_cores(),
                 calls=args.calls, repeats=args.repeats, burners=args.burners,
                 p50_ms=med[label]["p50"], p99_ms=med[label]["p99"], cpu_ms_per_call=med[label]["cpu"],
                 p50_spread=[min(res["p50"]), max(res["p50"])],
                 p99_spread=[min(res["p99"]), max(res["p99"])],
                 default_over_pinned_p50=med["default"]["p50"] / med["pinned"]["p50"],
                 default_over_pinned_p99=med["default"]["p99"] / med["pinned"]["p99"],
                 default_over_pinned_cpu=med["default"]["cpu"] / med["pinned"]["cpu"],
                 n_vectors=int(vectors.shape[0]), query_cache="not used",
                 embedding_cache=dense.last_encode, load_average_start=load_start,
                 load_average_end=load_end, **cond)


if __name__ == "__main__":
    main()
