"""End-to-end search latency in-process, uncached: the default engine, trained, on unseen queries.

1. Builds the default engine (the demo config: BM25, click memory, dense MiniLM, XR-Linear;
   LinUCB plans; LambdaMART ranker), events in a temporary directory.
2. Trains it online for ``--train-rounds`` rounds of the seeded movie query stream with PBM
   navigational clicks (``simulators.environment.run_session``), so the policy has learned and
   the ranker is fitted, as in a running service. ``--save DIR`` saves this engine, so
   ``benchmarks/serve.py --engine DIR`` serves the very same one.
3. Times ``Engine.search`` on ``--queries`` distinct movie queries per round, none seen in
   training (cold: every query-keyed cache misses; the dense strategy's query-embedding cache
   hit rate is recorded to show it), ``--repeats`` rounds with fresh queries each. No feedback
   is sent while timing, so the engine does not change between rounds.

Per search: wall time, the process's CPU time (every thread), and the engine's own per-stage
split (``Decision.timings_ms``: features, policy, ``strategy:<name>``, union, ranker, logging).
Per round: p50/p99; reported as the median and [min, max] over rounds, with the plan mix (how
often each strategy ran), native thread settings, versions and load average at start and end.
One JSON line per round and a summary line.

    python benchmarks/search.py [--train-rounds 1000] [--queries 300] [--repeats 3] [--save DIR]
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# benchmarks/policies.py would shadow the `policies` package: put the repo first, drop this folder
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from benchmarks.conditions import conditions, load_average  # noqa: E402
from ltrr.catalog import Catalog  # noqa: E402
from ltrr.config import DEFAULT_CONFIG, parse_config  # noqa: E402
from ltrr.engine import Engine  # noqa: E402
from simulators.environment import run_session  # noqa: E402
from simulators.movies import MovieQueryGenerator  # noqa: E402
from simulators.session import make_click_model  # noqa: E402

N_WARM = 20  # untimed first searches (never repeated in the timed rounds)


def spread(values: list[float]) -> dict[str, float]:
    return {"median": round(float(np.median(values)), 3), "min": round(float(np.min(values)), 3),
            "max": round(float(np.max(values)), 3)}


def query_cache_stats(engine: Engine) -> dict[str, dict]:
    """Hits and misses of every strategy's query cache (the dense query-embedding cache)."""
    out = {}
    for name, strat in engine.strategies.items():
        cache = getattr(strat, "query_cache", None)
        if cache is not None and hasattr(cache, "stats"):
            s = cache.stats()
            out[name] = {"hits": s.hits, "misses": s.misses}
    return out


def timed_round(engine: Engine, queries: list[str]) -> dict:
    wall, cpu, stages = [], [], {}
    ran: dict[str, int] = {}
    before = query_cache_stats(engine)
    for q in queries:
        c0, w0 = time.process_time(), time.perf_counter()
        d = engine.search(q)
        wall.append((time.perf_counter() - w0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
        for k, v in d.timings_ms.items():
            stages.setdefault(k, []).append(v)
        for s, depth in zip(d.plan.strategies, d.plan.depths, strict=True):
            ran[s] = ran.get(s, 0) + int(depth > 0)
    after = query_cache_stats(engine)
    n = len(queries)
    hits = {k: {"hits": after[k]["hits"] - before[k]["hits"], "misses": after[k]["misses"] - before[k]["misses"]}
            for k in after}
    return {"p50_ms": float(np.percentile(wall, 50)), "p99_ms": float(np.percentile(wall, 99)),
            "mean_ms": float(np.mean(wall)), "cpu_ms_mean": float(np.mean(cpu)),
            "cpu_p50_ms": float(np.percentile(cpu, 50)), "cpu_p99_ms": float(np.percentile(cpu, 99)),
            # a stage absent from a search (strategy not in its plan) counts as 0 ms there
            "stage_mean_ms": {k: float(np.sum(v)) / n for k, v in sorted(stages.items())},
            "stage_p50_ms_when_run": {k: float(np.percentile(v, 50)) for k, v in sorted(stages.items())},
            "strategy_share": {k: round(v / n, 3) for k, v in sorted(ran.items())},
            "query_cache": hits}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train-rounds", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=300, help="distinct unseen queries per round")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", type=Path, default=None, help="save the trained engine here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ltrr-search-bench-") as tmp:
        data = json.loads(json.dumps(DEFAULT_CONFIG))
        data["store"] = {"events_path": str(Path(tmp) / "events.sqlite")}
        cfg = parse_config(data, "<search benchmark config>")
        catalog = Catalog.from_jsonl(cfg.catalog.path)
        t0 = time.perf_counter()
        engine = Engine.from_config(cfg, catalog=catalog)
        build_s = time.perf_counter() - t0
        gen = MovieQueryGenerator(catalog, seed=args.seed)
        train = gen.stream(args.train_rounds, max(args.train_rounds // 4, 1), seed=args.seed)
        t0 = time.perf_counter()
        res = run_session(engine, train, make_click_model("pbm", "navigational"), seed=args.seed)
        train_s = time.perf_counter() - t0
        if args.save is not None:
            engine.save(args.save)
        seen = {q.text for q in train}
        pool = [q.text for q in MovieQueryGenerator(catalog, seed=args.seed + 1000).sample_pool(
            args.queries * args.repeats + N_WARM + len(seen))]
        fresh = [q for q in pool if q not in seen]
        need = args.queries * args.repeats + N_WARM
        if len(fresh) < need:
            raise SystemExit(f"only {len(fresh)} unseen distinct queries; need {need}")
        for q in fresh[:N_WARM]:  # first-call allocations (these queries are not timed again)
            engine.search(q)
        fresh = fresh[N_WARM:]
        cond = conditions()
        load_start = load_average()
        rounds = []
        for r in range(args.repeats):
            out = timed_round(engine, fresh[r * args.queries:(r + 1) * args.queries])
            rounds.append(out)
            print(json.dumps({"bench": "search_inprocess", "round": r, "queries": args.queries,
                              **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()
                                 if not isinstance(v, dict)},
                              "stage_mean_ms": {k: round(v, 3) for k, v in out["stage_mean_ms"].items()},
                              "strategy_share": out["strategy_share"], "query_cache": out["query_cache"],
                              "load_average": load_average()}), flush=True)
        stage_names = sorted({k for o in rounds for k in o["stage_mean_ms"]})
        print(json.dumps({
            "bench": "search_inprocess-summary", "train_rounds": args.train_rounds,
            "train_ndcg@10_last_quarter": round(float(np.nanmean(res.ndcg[-max(args.train_rounds // 4, 1):])), 4),
            "ranker_fitted": bool(engine.ranker.is_fitted), "policy": cfg.policy.type,
            "build_s": round(build_s, 1), "train_s": round(train_s, 1),
            "queries_per_round": args.queries, "repeats": args.repeats,
            "cache": "cold: distinct queries never seen by the engine (dense query cache hits shown)",
            **{k: spread([o[k] for o in rounds]) for k in ("p50_ms", "p99_ms", "mean_ms", "cpu_ms_mean",
                                                           "cpu_p50_ms", "cpu_p99_ms")},
            "stage_mean_ms": {k: spread([o["stage_mean_ms"].get(k, 0.0) for o in rounds]) for k in stage_names},
            "stage_p50_ms_when_run": {k: spread([o["stage_p50_ms_when_run"][k] for o in rounds
                                                 if k in o["stage_p50_ms_when_run"]]) for k in stage_names},
            "strategy_share": rounds[-1]["strategy_share"],
            "query_cache_hits_total": sum(o["query_cache"].get(k, {}).get("hits", 0)
                                          for o in rounds for k in o["query_cache"]),
            "load_average_start": load_start, "load_average_end": load_average(), **cond}), flush=True)
        engine.close()


if __name__ == "__main__":
    main()
