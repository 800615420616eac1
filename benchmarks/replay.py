"""Benchmark: replay throughput (records/s) on the shipped movie catalog (17,470 films).

A foreign click log (query, shown, clicks) of ``--queries`` searches is simulated once with the
demo engine (BM25 + click memory, epsilon-greedy, LambdaMART retrained online, PBM
navigational clicks) and cached under ``work/bench/``. It is then replayed with the demo config
in three modes, each timed from the first record to the last (engine build excluded, reported
separately):

* ``full``: every strategy retrieves at its largest depth, all plans' rewards, full-information
  policy update, memory update, ranker training rows (features of the shown items) and a
  LightGBM retrain every 500 records (the demo's ``retrain_every``);
* ``ranker_rows``: the same without the periodic retrains (rows still built and logged);
* ``retrieval``: retrieval, plan rewards, policy and memory only (``--no-ranker``).

Target: replay with retrieval >= 500 queries/s. ``process_cpu_s`` and the load average are
printed too: on a shared machine the wall clock also counts other processes. No reference library exists for this loop, so
``ratio_vs_target`` is records/s over 500. One JSON line per result.

    .venv/bin/python benchmarks/replay.py [--queries 5000]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ltrr.config import default_config  # noqa: E402
from ltrr.offline.replay import replay  # noqa: E402
from simulators.simlog import generate_log  # noqa: E402

TARGET = 500.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=5000)
    parser.add_argument("--pool", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=str(ROOT / "work" / "bench"))
    args = parser.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cfg = default_config()
    log = work / f"replay_foreign_{args.queries}_{args.seed}.parquet"
    if not log.exists():
        t0 = time.perf_counter()
        generate_log(cfg, log, args.queries, pool_size=args.pool, seed=args.seed, foreign=True)
        print(json.dumps({"bench": "replay", "step": "simulate foreign log", "records": args.queries,
                          "seconds": round(time.perf_counter() - t0, 2)}), flush=True)
    from ltrr.engine import Engine

    c0 = time.process_time()
    Engine.from_config(cfg).close()
    build_cpu = time.process_time() - c0
    no_retrain = cfg.model_copy(update={"ranker": cfg.ranker.model_copy(update={"retrain_every": 0})})
    modes = [("full", cfg, True), ("ranker_rows", no_retrain, True), ("retrieval", cfg, False)]
    for mode, config, ranker in modes:
        out = work / f"replay_out_{mode}"
        shutil.rmtree(out, ignore_errors=True)
        t0, c0 = time.perf_counter(), time.process_time()
        res = replay(config, log, out, checkpoint_every=0, window=1000, progress=False, train_ranker=ranker)
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
        rate = res.records / res.seconds
        print(json.dumps({"bench": "replay", "mode": mode, "catalog_items": 17470, "records": res.records,
                          "seconds": round(res.seconds, 2), "records_per_s": round(rate, 1),
                          "engine_build_and_save_s": round(total - res.seconds, 2),
                          # CPU seconds of the whole call (build + save included): on a shared
                          # machine the wall clock also counts other processes' time
                          "process_cpu_s": round(cpu, 2),
                          "records_per_cpu_s_excl_build": round(res.records / max(cpu - build_cpu, 1e-9), 1),
                          "load_avg_1min": round(os.getloadavg()[0], 1),
                          "ratio_vs_target": round(rate / TARGET, 3),
                          "cumulative_regret": round(res.metrics["cumulative_regret"], 2)}), flush=True)


if __name__ == "__main__":
    main()
