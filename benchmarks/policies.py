"""Benchmark: the retrieval-plan policies.

Section ``latency`` (this part): per-decision latency of every numpy policy — one ``select`` plus
one ``update`` on a fresh context, timed with ``perf_counter_ns`` — with 16 context features and
plan menus of ~20 and ~56 plans, after a warm-up of ``--warmup`` decisions. Vowpal Wabbit's
``cb_explore_adf`` backend (squarecb, epsilon, bag) runs the same loop alongside as the reference
library; ``ratio_p99_vs_vw_squarecb`` is VW squarecb's p99 over ours (> 1 means we are faster).
Target: numpy policies p99 <= 200 µs. Wall-clock percentiles (``p50_us``/``p99_us``) include
preemption by other processes; ``cpu_p*_us`` use the thread's CPU clock, which does not count time
spent descheduled, and are the fairer number on a shared machine. One JSON line per result.

Further sections (the simulator comparison on the movie query stream) register themselves in
``SECTIONS``; ``--section all`` runs every one.

    .venv/bin/python benchmarks/policies.py [--section latency] [--decisions 5000]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # single-threaded BLAS: small matrices, shared machine

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ltrr import registry  # noqa: E402
from policies.base import PlanMenu  # noqa: E402

N_FEATURES = 16
MENUS = {
    "small": ({"bm25": [0, 20, 50], "dense": [0, 20, 50], "xmr": [0, 20, 50], "memory": [0, 10]}, 60),
    "large": ({"bm25": [0, 20, 50, 100], "dense": [0, 20, 50, 100], "xmr": [0, 20, 50],
               "memory": [0, 10]}, 120),
}
NUMPY_POLICIES: list[tuple[str, dict]] = [
    ("epsilon_greedy", {}),
    ("linucb", {}),
    ("linucb", {"epsilon": 0.05}),
    ("thompson", {}),
    ("softmax", {}),
    ("factored", {}),
    ("factored", {"exploration": "softmax", "alpha": 0.5}),
]
VW_POLICIES: list[tuple[str, dict]] = [
    ("vw", {"exploration": "squarecb"}),
    ("vw", {"exploration": "epsilon"}),
    ("vw", {"exploration": "bag"}),
]


def _time_decisions(name: str, params: dict, menu: PlanMenu, n: int, warmup: int, seed: int) -> dict:
    """Latency of ``n`` select+update decisions (after ``warmup``), in microseconds."""
    pol = registry.get("policy", name)(menu, N_FEATURES, params)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n + warmup, N_FEATURES))
    coin = rng.random(n + warmup)
    total = np.empty(n)
    select = np.empty(n)
    cpu = np.empty(n)
    n_s = len(menu.strategies)
    for i in range(n + warmup):
        x = X[i]
        c0 = time.thread_time_ns()
        t0 = time.perf_counter_ns()
        plan = pol.select(x, rng)
        t1 = time.perf_counter_ns()
        found = float(coin[i] < 0.3 + 0.1 * np.tanh(x[plan.action % N_FEATURES]))
        pol.update(x, plan, found - 0.001 * plan.total_depth,
                   np.full(n_s, found * 0.5) - 0.001 * np.asarray(plan.depths))
        t2 = time.perf_counter_ns()
        c2 = time.thread_time_ns()
        if i >= warmup:
            cpu[i - warmup] = (c2 - c0) / 1e3
            total[i - warmup] = (t2 - t0) / 1e3
            select[i - warmup] = (t1 - t0) / 1e3
    if hasattr(pol, "close"):
        pol.close()
    return {
        "p50_us": round(float(np.percentile(total, 50)), 1),
        "p99_us": round(float(np.percentile(total, 99)), 1),
        "select_p50_us": round(float(np.percentile(select, 50)), 1),
        "select_p99_us": round(float(np.percentile(select, 99)), 1),
        "cpu_p50_us": round(float(np.percentile(cpu, 50)), 1),
        "cpu_p99_us": round(float(np.percentile(cpu, 99)), 1),
    }


def latency(args: argparse.Namespace) -> None:
    for menu_name, (options, budget) in MENUS.items():
        menu = PlanMenu.build(options, budget)
        results = []
        for name, params in NUMPY_POLICIES + VW_POLICIES:
            res = _time_decisions(name, params, menu, args.decisions, args.warmup, args.seed)
            results.append((name, params, res))
        ref = next(r for n, p, r in results if n == "vw" and p["exploration"] == "squarecb")
        for name, params, res in results:
            line = {
                "bench": "policy_latency",
                "policy": name,
                "params": params,
                "menu": menu_name,
                "n_plans": menu.n_actions,
                "n_features": N_FEATURES,
                "decisions": args.decisions,
                **res,
                "ratio_p99_vs_vw_squarecb": round(ref["p99_us"] / res["p99_us"], 2),
                "ratio_cpu_p99_vs_vw_squarecb": round(ref["cpu_p99_us"] / res["cpu_p99_us"], 2),
            }
            if name != "vw":
                line["meets_p99_200us"] = res["p99_us"] <= 200.0
                line["meets_cpu_p99_200us"] = res["cpu_p99_us"] <= 200.0
            print(json.dumps(line), flush=True)


#: name -> function(args); the simulator comparison on the movie stream is added here
SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {
    "latency": latency,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--section", choices=[*SECTIONS, "all"], default="all")
    parser.add_argument("--decisions", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name, run in SECTIONS.items():
        if args.section in (name, "all"):
            run(args)


if __name__ == "__main__":
    main()
