"""Catalog encoding throughput: one process vs a Dask cluster of worker processes, and what it
means for a million items.

Seeded synthetic item texts (title + 30-120 Zipfian words, as benchmarks/scale.py) are encoded
cold (a fresh embedding-cache directory per run) with the default encoder backend, interleaved
over ``--repeats`` rounds:

* ``single-1``: one process, one native thread;
* ``single-N``: one process, every core (``threads.batch = 0``);
* ``cluster-W``: ``W`` single-threaded worker processes on a local Dask cluster
  (``encode_workers = W``), writing to the shared embedding cache.

One JSON line per run (texts/s wall, texts per CPU-second, conditions), then a summary with the
median texts/s per worker and the hours 1,000,000 items take on this machine and, assuming
linear scaling, on ``k`` such machines.

    python benchmarks/encode_scale.py --texts 3000 --repeats 3
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.conditions import conditions  # noqa: E402
from ltrr.threads import native_threads, usable_cores  # noqa: E402
from strategies.dense import DenseRetriever  # noqa: E402


def synthetic_texts(n: int, seed: int = 0, vocab: int = 50_000) -> list[str]:
    rng = np.random.default_rng(seed)
    words = np.array([f"w{i}" for i in range(vocab)])
    ranks = np.minimum(rng.zipf(1.1, size=(n, 120)), vocab) - 1
    lengths = rng.integers(30, 121, size=n)
    return [f"item {i} " + " ".join(words[ranks[i, : lengths[i]]]) for i in range(n)]


def run(mode: str, texts: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="ltrr-encode-") as root:
        params = {"embedding_cache_dir": root, "progress": False}
        if mode.startswith("cluster-"):
            params["encode_workers"] = int(mode.split("-")[1])
        dense = DenseRetriever(params)
        dense.encoder  # load (and export) before timing  # noqa: B018
        threads = 1 if mode == "single-1" else 0
        before = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        with native_threads(threads):
            dense.encode_items(texts)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    workers = int(mode.split("-")[1]) if mode.startswith("cluster-") else 1
    return {"bench": "encode_scale", "mode": mode, "texts": len(texts), "workers": workers,
            "wall_s": round(wall, 2), "texts_per_s": round(len(texts) / wall, 1),
            "driver_cpu_s": round(cpu, 2), "backend": dense.params.backend, **conditions(("onnx",))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--texts", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=usable_cores())
    args = ap.parse_args()
    texts = synthetic_texts(args.texts)
    modes = ["single-1", f"single-{args.workers}", f"cluster-{args.workers}"]
    rows: dict[str, list[dict]] = {m: [] for m in modes}
    for _ in range(args.repeats):  # interleaved: A B C A B C ...
        for mode in modes:
            line = run(mode, texts)
            rows[mode].append(line)
            print(json.dumps(line), flush=True)
    med = {m: float(np.median([r["texts_per_s"] for r in rs])) for m, rs in rows.items()}
    best = max(med, key=med.get)
    hours = 1_000_000 / med[best] / 3600
    summary = {"bench": "encode_scale", "summary": True, "texts": args.texts, "repeats": args.repeats,
               "median_texts_per_s": med, "texts_per_s_per_worker": round(med[f"cluster-{args.workers}"] / args.workers, 1),
               "best": best, "hours_for_1M_on_this_machine": round(hours, 2),
               "hours_for_1M_on_k_machines_if_linear": {k: round(hours / k, 2) for k in (1, 2, 4, 8)},
               "spread_texts_per_s": {m: [min(r["texts_per_s"] for r in rs), max(r["texts_per_s"] for r in rs)]
                                      for m, rs in rows.items()}}
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
