"""Latency-aware plans on the movie stream: does the default learned policy reach all-at-max's
nDCG@10 at a fraction of its latency?

The default engine config (every strategy of the demo menu) runs online on the seeded movie
query stream with **measured** latency (``policy.latency_source = "measured"``: the reward
charges ``reward.latency_weight`` per measured millisecond of each strategy) and a **cold query
cache** (the dense strategy's query-embedding cache is off, ``query_cache_size = 0``, so every
search encodes its query). Compared runs: the default learned configuration (with its
incumbent), ``all_max`` (every strategy at its largest depth, learned ranker) and
``rrf_all_max``. One JSON line per run and seed, then a summary line: nDCG@10 over the last
quarter of the rounds and mean search latency (wall and CPU per search), and the learned
policy's gap and latency ratio to all_max.

    python benchmarks/latency_plans.py --rounds 20000 --seeds 0 1
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.conditions import conditions  # noqa: E402
from benchmarks.learning import merge_sections  # noqa: E402
from ltrr.catalog import Catalog  # noqa: E402
from ltrr.config import DEFAULT_CONFIG, parse_config  # noqa: E402
from simulators.movies import MovieQueryGenerator  # noqa: E402
from simulators.session import NO_INCUMBENT, PolicySpec, compare_policies  # noqa: E402


def config(latency_weight: float | None):
    data = json.loads(json.dumps(DEFAULT_CONFIG))
    for s in data["strategies"]:
        if s.get("type", s["name"]) == "dense":
            s.setdefault("params", {})["query_cache_size"] = 0  # cold: every query is encoded
    data["policy"]["latency_source"] = "measured"
    if latency_weight is not None:
        data.setdefault("reward", {})["latency_weight"] = latency_weight
    return parse_config(data, "<latency_plans benchmark>")


def shares(labels: np.ndarray) -> dict[str, float]:
    """Share of each label (``""`` = ungated) among ``labels``."""
    values, counts = np.unique(np.asarray(labels, dtype=str), return_counts=True)
    return {str(v) or "ungated": round(float(c) / max(len(labels), 1), 3) for v, c in zip(values, counts, strict=True)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=20000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--latency-weight", type=float, default=None,
                    help="reward per ms (default: the config's default)")
    ap.add_argument("--out", type=Path, default=None, help="also append the JSON lines here")
    ap.add_argument("--override", default="{}",
                    help='config sections to change, as JSON, e.g. \'{"ranker": {"match_when_off": "missing"}}\'')
    args = ap.parse_args()
    cfg = merge_sections(config(args.latency_weight), json.loads(args.override))
    catalog = Catalog.from_jsonl(cfg.catalog.path)
    specs = [PolicySpec(cfg.policy.type, cfg.policy.type, dict(cfg.policy.params)),
             PolicySpec("all_max", "fixed", {}, NO_INCUMBENT),
             PolicySpec("rrf_all_max", "rrf", {}, NO_INCUMBENT)]
    lines = []
    for seed in args.seeds:
        stream = MovieQueryGenerator(catalog, seed=seed).stream(args.rounds, max(args.rounds // 4, 1), seed=seed)
        start = conditions()
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        results, _report = compare_policies(cfg.model_copy(update={"seed": seed}), catalog, stream,
                                            specs=specs, seed=seed, progress=False, repeatable=False)
        wall = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        tail = max(args.rounds // 4, 1)
        for r in results:
            line = {"bench": "latency_plans", "seed": seed, "policy": r.policy, "rounds": args.rounds,
                    "ndcg@10_final": round(float(np.nanmean(r.ndcg[-tail:])), 4),
                    "latency_mean_ms": round(float(r.latency_ms.mean()), 3),
                    "latency_mean_ms_final": round(float(r.latency_ms[-tail:].mean()), 3),
                    "latency_p50_ms": round(float(np.percentile(r.latency_ms, 50)), 3),
                    "latency_p99_ms": round(float(np.percentile(r.latency_ms, 99)), 3),
                    "stage_ms_mean": {k: round(float(v.mean()), 3) for k, v in r.stage_ms.items()},
                    # the last quarter: per-stage mean (0 where a stage did not run), the share of
                    # searches each strategy ran in, who chose the plan and how pages were ranked
                    "stage_ms_mean_final": {k: round(float(v[-tail:].mean()), 3) for k, v in r.stage_ms.items()},
                    "strategy_share_final": {s: round(float(v), 3) for s, v in
                                             zip(r.strategies, (r.depths[-tail:] > 0).mean(axis=0), strict=True)},
                    "plan_source_final": shares(r.plan_source[-tail:]),
                    "ranking_final": shares(r.ranking[-tail:]),
                    "mean_candidates_final": round(float(r.n_candidates[-tail:].mean()), 1),
                    "cache": "query-embedding cache off (cold)", "latency_source": "measured",
                    "latency_weight": cfg.reward.latency_weight, "override": json.loads(args.override)}
            lines.append(line)
            print(json.dumps(line), flush=True)
        run_cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
        print(json.dumps({"bench": "latency_plans", "seed": seed, "wall_s": round(wall, 1),
                          "cpu_s": round(run_cpu, 1), "start": start,
                          # the engines pin their pools at construction: the end line shows the
                          # thread settings the searches ran with (the start line: before any engine)
                          "end": conditions()}),
              flush=True)
    learned = cfg.policy.type
    summary = {"bench": "latency_plans", "summary": True, "seeds": args.seeds}
    for name in (learned, "all_max", "rrf_all_max"):
        rows = [x for x in lines if x["policy"] == name]
        summary[name] = {"ndcg@10_final": round(float(np.mean([x["ndcg@10_final"] for x in rows])), 4),
                         "latency_mean_ms_final": round(float(np.mean([x["latency_mean_ms_final"] for x in rows])), 3)}
    summary["ndcg_gap_to_all_max"] = round(summary[learned]["ndcg@10_final"] - summary["all_max"]["ndcg@10_final"], 4)
    summary["latency_ratio_to_all_max"] = round(summary[learned]["latency_mean_ms_final"]
                                                / summary["all_max"]["latency_mean_ms_final"], 3)
    print(json.dumps(summary), flush=True)
    if args.out:
        with args.out.open("a") as fh:
            for x in [*lines, summary]:
                fh.write(json.dumps(x) + "\n")


if __name__ == "__main__":
    main()
