"""Benchmark: off-policy estimator throughput against Open Bandit Pipeline 0.4.1, single process.

A seeded synthetic log of ``--events`` rounds (default 1M) with ``--actions`` actions and
``--len-list`` positions: uniform-random logger, a softmax target, a noisy reward model. For each
estimator we time ``estimate_policy_value`` on the whole log (validation included, for both
libraries), best of ``--repeat`` runs, and check the two values agree to 1e-9. Also timed: the
shard path (``partial`` on 8 shards + ``merge``) and reusing one ``RoundTerms`` for all six
estimators, as ``ltrr.offline.estimators.estimate`` does. Target: >= 200k events/s for
IPS/SNIPS/DR. Prints one JSON line per result; ``ratio_vs_obp`` is OBP's time / ours (> 1 means
we are faster).

    .venv/bin/python benchmarks/ope.py [--events 1000000] [--actions 10] [--len-list 1]

Section ``truth`` (``--section truth``): ground truth in the movie simulator. A demo engine warms
up online (memory, policy, ranker learn), then is frozen. Logs are written with an exploring
epsilon-greedy logger (epsilon 0.3) over ``--seeds`` independent query streams; every target
policy's value is estimated from each log with every estimator (Poisson-bootstrap 95% CIs), and
each target is run on-policy on its own long stream for its true value (the expected reward of
each page from the click model's exact click probabilities, so the truth has no click noise).
Prints relative errors, spread and CI coverage per (target, estimator) and writes
``work/bench/ope_truth/report.html``.

Section ``scale`` (``--section scale``): a synthetic ltrr-format Parquet log of ``--scale-events``
rounds (default 1M, written once in 65,536-row groups under ``work/bench/``) is evaluated by
``ltrr.offline.ope.evaluate`` in a child process, single-process, bootstrap-free and with
``--scale-bootstrap`` Poisson replicates (default 10,000), reporting wall and CPU time and the
child's peak RSS (``resource`` and, where it exists, ``/usr/bin/time -v``; target < 2 GB).

Section ``dask`` (``--section dask``): on a ``--dask-events`` log (default 2M) the same evaluation
single-process and on a local Dask cluster of 2 single-threaded worker processes (``shards=2``),
interleaved A B A B ``--repeat`` times, wall and CPU of the child and its workers, load average
at start and end, the largest difference between the two paths' estimates and intervals; then
once against an external scheduler (``dask scheduler`` + 2 ``dask worker`` processes on
127.0.0.1).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ltrr.offline.estimators import (  # noqa: E402
    DM,
    DR,
    IPS,
    SNDR,
    SNIPS,
    RoundTerms,
    SwitchDR,
    merge,
)


def synthetic_log(n: int, n_actions: int, len_list: int, seed: int) -> dict[str, np.ndarray]:
    """A uniform-random logger, a softmax target and a noisy reward model, all seeded."""
    rng = np.random.default_rng(seed)
    true_q = rng.uniform(0.0, 0.3, (n_actions, len_list))
    logits = rng.normal(0.0, 1.0, (n, n_actions, 1)).astype(np.float64)
    action_dist = np.exp(logits - logits.max(axis=1, keepdims=True))
    action_dist /= action_dist.sum(axis=1, keepdims=True)
    action_dist = np.repeat(action_dist, len_list, axis=2) if len_list > 1 else action_dist
    action = rng.integers(0, n_actions, n)
    position = rng.integers(0, len_list, n)
    reward = (rng.random(n) < true_q[action, position]).astype(np.float64)
    q_hat = np.clip(true_q[None, :, :] + rng.normal(0.0, 0.02, (n, n_actions, len_list)), 0, 1)
    out = dict(reward=reward, action=action, pscore=np.full(n, 1.0 / n_actions),
               action_dist=action_dist, estimated_rewards_by_reg_model=q_hat)
    if len_list > 1:
        out["position"] = position
    return out


def best_time(fn, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def _subset(arrays: dict, keys: tuple[str, ...]) -> dict:
    return {k: arrays[k] for k in keys if k in arrays}


LOG_KEYS = ("reward", "action", "pscore", "action_dist", "position")
DR_KEYS = (*LOG_KEYS, "estimated_rewards_by_reg_model")
DM_KEYS = ("action_dist", "position", "estimated_rewards_by_reg_model")


def throughput(args: argparse.Namespace) -> None:
    arrays = synthetic_log(args.events, args.actions, args.len_list, args.seed)
    n = args.events
    try:
        from obp import ope as obp_ope
    except ImportError:  # the comparison is optional; our numbers still print
        obp_ope = None
    ours = [
        (IPS(), "InverseProbabilityWeighting", LOG_KEYS, LOG_KEYS, {}),
        (SNIPS(), "SelfNormalizedInverseProbabilityWeighting", LOG_KEYS, LOG_KEYS, {}),
        (DM(), "DirectMethod", DR_KEYS, DM_KEYS, {}),
        (DR(), "DoublyRobust", DR_KEYS, DR_KEYS, {}),
        (SNDR(), "SelfNormalizedDoublyRobust", DR_KEYS, DR_KEYS, {}),
        (SwitchDR(tau=5.0), "SwitchDoublyRobust", DR_KEYS, DR_KEYS, {"tau": 5.0}),
    ]
    base = dict(bench="ope_throughput", n_events=n, n_actions=args.actions,
                len_list=args.len_list)
    for est, obp_name, keys, obp_keys, obp_kw in ours:
        # DM needs only the model, but the log is passed as in a real run (validated too)
        kw = _subset(arrays, keys if not isinstance(est, DM) else DM_KEYS)
        seconds, value = best_time(lambda kw=kw, est=est: est.estimate_policy_value(**kw),
                                   args.repeat)
        row = dict(base, estimator=est.label, seconds=round(seconds, 4),
                   events_per_s=round(n / seconds), value=value)
        if obp_ope is not None:
            ref = getattr(obp_ope, obp_name)(**obp_kw)
            okw = _subset(arrays, obp_keys)
            obp_seconds, obp_value = best_time(
                lambda okw=okw, ref=ref: ref.estimate_policy_value(**okw), args.repeat)
            row.update(obp_seconds=round(obp_seconds, 4),
                       obp_events_per_s=round(n / obp_seconds),
                       ratio_vs_obp=round(obp_seconds / seconds, 3),
                       abs_diff_vs_obp=abs(value - float(obp_value)))
            if abs(value - float(obp_value)) > 1e-9:
                row["parity"] = "FAILED"
        print(json.dumps(row), flush=True)

    # all six estimators from one pass over the log (terms computed once)
    def all_six() -> list[float]:
        terms = RoundTerms.compute(**_subset(arrays, DR_KEYS))
        return [e.value_from_terms(terms) for e, *_ in ours]

    seconds, _ = best_time(all_six, args.repeat)
    print(json.dumps(dict(base, estimator="all six, shared terms", seconds=round(seconds, 4),
                          events_per_s=round(n / seconds))), flush=True)

    # shard path: partial sums on 8 shards, merged
    bounds = np.linspace(0, n, 9).astype(int)

    def sharded(est=DR()) -> float:
        kw = _subset(arrays, DR_KEYS)
        stats = None
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            part = est.partial(**{k: v[lo:hi] for k, v in kw.items()})
            stats = part if stats is None else merge(stats, part)
        return est.value(stats)

    seconds, value = best_time(sharded, args.repeat)
    whole = DR().estimate_policy_value(**_subset(arrays, DR_KEYS))
    print(json.dumps(dict(base, estimator="dr, 8 shards merged", seconds=round(seconds, 4),
                          events_per_s=round(n / seconds),
                          abs_diff_vs_single_pass=abs(value - whole))), flush=True)


# ----------------------------------------------------------------------------------------------
# ground truth in the simulator


def _expected_rewards(engine, queries, click_model, k: int) -> tuple[np.ndarray, list]:
    """Search every query with the engine's current policy (frozen: no feedback) and return the
    expected reward of each page and the decisions."""
    cost = engine.config.reward.cost_per_candidate
    out = np.empty(len(queries))
    decisions = []
    for i, q in enumerate(queries):
        d = engine.search(q.text, {"qtype": q.qtype}, k=k, ts=1_735_689_600.0 + 37.0 * i)
        grades = np.full((1, k), -1.0)
        grades[0, : d.page.size] = [q.relevant.get(int(r), 0) for r in d.page]
        p_any = 1.0 - float(np.prod(1.0 - click_model.click_probabilities(grades)[0][: d.page.size]))
        out[i] = float(np.clip(p_any - cost * d.plan.total_depth, -1.0, 1.0))
        decisions.append(d)
    return out, decisions


def truth(args: argparse.Namespace) -> None:
    import shutil

    from ltrr import registry
    from ltrr.config import default_config
    from ltrr.engine import Engine
    from ltrr.offline.ope import ESTIMATOR_NAMES, evaluate, target_specs
    from ltrr.offline.report import ope_report
    from policies.epsilon_greedy import EpsilonGreedy
    from policies.fixed import FixedPolicy
    from simulators.simlog import movie_stream, simulate_log

    work = ROOT / "work" / "bench" / "ope_truth"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    from ltrr.config import parse_config

    # pinned (not the demo defaults, which change): BM25 {0,10,50,100} x memory {0,10,50}, an
    # epsilon-greedy logger with epsilon 0.3, any-click reward minus 0.0005 per candidate
    base = default_config().model_dump(mode="json")
    fields = base["catalog"]["text_fields"]
    cfg = parse_config({**base,
                        "catalog": {**base["catalog"], "limit": args.catalog_limit},
                        "strategies": [{"name": "bm25", "depths": [0, 10, 50, 100], "params": {"text_fields": fields}},
                                       {"name": "memory", "depths": [0, 10, 50]}],
                        "policy": {"type": "epsilon_greedy", "params": {"epsilon": 0.3}, "budget": 300},
                        "reward": {"cost_per_candidate": 0.0005, "kind": "any_click"},
                        "context_features": None}, "<ope truth config>")
    t0 = time.perf_counter()
    engine = Engine.from_config(cfg)
    warm = movie_stream(engine, args.warmup, pool_size=args.pool, seed=1000)
    simulate_log(engine, warm, work / "warmup.parquet", seed=1000, learn=True)
    engine.save(work / "engine")
    logger = engine.policy
    menu, nf, names = logger.menu, logger.n_features, logger.feature_names
    greedy = EpsilonGreedy(menu, nf, {"epsilon": 0.05}, names)
    greedy._set_state_arrays(logger._state_arrays())
    greedy.save(work / "target_greedy")
    fixed = {"bm25_100": {"bm25": 100}, "all_max": {}, "bm25_10+memory_50": {"bm25": 10, "memory": 50}}
    for name, depths in fixed.items():
        FixedPolicy(menu, nf, {"depths": depths}, names).save(work / f"target_{name}")
    targets = target_specs([str(work / "target_greedy")] + [str(work / f"target_{n}") for n in fixed])
    print(json.dumps({"bench": "ope_truth", "step": "warm-up", "queries": args.warmup,
                      "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
    click_model = registry.get("click_model", "pbm")(preset="navigational")
    k = cfg.page_size
    # true values: each target on-policy on its own stream, expected rewards (no click noise)
    true_value, true_se = {}, {}
    for spec in targets:
        from ltrr.offline.ope import load_policy

        engine.policy = load_policy(spec.source)
        stream = movie_stream(engine, args.truth_queries, pool_size=args.pool, seed=2000)
        r, _ = _expected_rewards(engine, stream, click_model, k)
        true_value[spec.name] = float(r.mean())
        true_se[spec.name] = float(r.std(ddof=1) / np.sqrt(r.size))
    engine.policy = logger
    print(json.dumps({"bench": "ope_truth", "step": "on-policy truth", "queries_per_target": args.truth_queries,
                      "true_value": {k_: round(v, 4) for k_, v in true_value.items()},
                      "standard_error": {k_: round(v, 4) for k_, v in true_se.items()}}), flush=True)
    runs = []
    for seed in range(args.seeds):
        stream = movie_stream(engine, args.log_queries, pool_size=args.pool, seed=3000 + seed)
        path = work / f"log_{seed}.parquet"
        simulate_log(engine, stream, path, seed=3000 + seed, learn=False)
        runs.append(evaluate(path, targets, estimators=ESTIMATOR_NAMES, n_bootstrap=args.bootstrap,
                             seed=seed))
    engine.close()
    rows = []
    for spec in targets:
        t = true_value[spec.name]
        for est in ESTIMATOR_NAMES:
            vals = np.array([r["policies"][spec.name]["estimates"][est]["value"] for r in runs])
            lo = np.array([r["policies"][spec.name]["estimates"][est]["ci_low"] for r in runs])
            hi = np.array([r["policies"][spec.name]["estimates"][est]["ci_high"] for r in runs])
            row = {"bench": "ope_truth", "target": spec.name, "estimator": est, "true_value": round(t, 4),
                   "mean_estimate": round(float(vals.mean()), 4),
                   "mean_relative_error": round(float(np.mean(np.abs(vals - t)) / abs(t)), 4),
                   "rmse": round(float(np.sqrt(np.mean((vals - t) ** 2))), 4),
                   "std": round(float(vals.std(ddof=1)), 4),
                   "ci_coverage": round(float(np.mean((lo <= t) & (t <= hi))), 3),
                   "mean_ci_width": round(float(np.mean(hi - lo)), 4),
                   "seeds": args.seeds, "log_rounds": args.log_queries}
            rows.append(row)
            print(json.dumps(row), flush=True)
    by = {(r["target"], r["estimator"]): r for r in rows}
    names_ = [s.name for s in targets]
    summary = {"bench": "ope_truth", "summary": True,
               "dr_error_le_ips_error": {n: by[(n, "dr")]["rmse"] <= by[(n, "ips")]["rmse"] for n in names_},
               "snips_std_lt_ips_std": {n: by[(n, "snips")]["std"] < by[(n, "ips")]["std"] for n in names_},
               "coverage_by_estimator": {e: round(float(np.mean([by[(n, e)]["ci_coverage"] for n in names_])), 3)
                                         for e in ESTIMATOR_NAMES}}
    print(json.dumps(summary), flush=True)
    ope_report(work, runs[0], truth=true_value)
    (work / "truth_table.json").write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))


# ----------------------------------------------------------------------------------------------
# scale: a 10M-round Parquet log in bounded memory


def write_synthetic_log(path: Path, n: int, seed: int = 0, rows_per_group: int = 65_536) -> None:
    """An ltrr-format Parquet log of ``n`` rounds built column-wise with pyarrow (no per-row
    Python): an epsilon-greedy logger over the demo menu, 10 shown ids, Bernoulli clicks."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ltrr.offline.logs import LogWriter

    strategies = ("bm25", "memory")
    plans = np.array([(b, m) for b in (0, 10, 50, 100) for m in (0, 10, 50) if b + m > 0])
    A = len(plans)
    rng = np.random.default_rng(seed)
    d = 11
    theta = rng.normal(0, 0.3, (A, d))
    schema = LogWriter(path, strategies)._schema()
    writer = pq.ParquetWriter(path, schema, compression="zstd")

    def fixed_strings(codes: np.ndarray, prefix: bytes, width: int) -> pa.Array:
        digits = np.char.zfill(codes.astype("U"), width - len(prefix)).astype(f"S{width - len(prefix)}")
        raw = np.frombuffer(digits.tobytes(), dtype=np.uint8).reshape(-1, width - len(prefix))
        body = np.concatenate([np.tile(np.frombuffer(prefix, np.uint8), (raw.shape[0], 1)), raw], axis=1)
        offsets = np.arange(0, (raw.shape[0] + 1) * width, width, dtype=np.int32)
        return pa.StringArray.from_buffers(raw.shape[0], pa.py_buffer(offsets), pa.py_buffer(body.tobytes()))

    for start in range(0, n, rows_per_group):
        m = min(rows_per_group, n - start)
        x = rng.random((m, d))
        x[:, 0] = 1.0
        greedy = np.argmax(x @ theta.T, axis=1)
        explore = rng.random(m) < 0.3
        action = np.where(explore, rng.integers(0, A, m), greedy)
        prop = np.where(action == greedy, 0.7 + 0.3 / A, 0.3 / A)
        depths = plans[action]
        reward_p = np.clip(0.2 + 0.5 * x[:, 1] * (depths[:, 0] > 0) + 0.3 * x[:, 2] * (depths[:, 1] > 0), 0, 1)
        click = rng.random(m) < reward_p
        reward = click - 0.0005 * depths.sum(axis=1)
        shown_codes = rng.integers(0, 17_470, (m, 10))
        shown = pa.ListArray.from_arrays(np.arange(0, 10 * m + 1, 10, dtype=np.int32),
                                         fixed_strings(shown_codes.ravel(), b"tt", 9))
        pos = rng.integers(0, 10, m)
        c_offsets = np.concatenate([[0], np.cumsum(click)]).astype(np.int32)
        clicks = pa.ListArray.from_arrays(c_offsets, fixed_strings(shown_codes[np.arange(m), pos][click], b"tt", 9))
        sp = np.stack([np.where(action == greedy, 0.8, 0.2)] * 2, axis=1)
        table = pa.Table.from_arrays([
            fixed_strings(np.arange(start, start + m), b"e", 12),
            pa.array(1.7e9 + np.arange(start, start + m, dtype=np.float64)),
            fixed_strings(rng.integers(0, 100_000, m), b"q", 8),
            pa.array(np.full(m, "{}")),
            shown, clicks,
            pa.StructArray.from_arrays([pa.array(depths[:, 0].astype(np.int32)), pa.array(depths[:, 1].astype(np.int32))],
                                       names=list(strategies)),
            pa.StructArray.from_arrays([pa.array(prop), pa.StructArray.from_arrays(
                [pa.array(sp[:, 0]), pa.array(sp[:, 1])], names=list(strategies))], names=["plan", "strategies"]),
            pa.ListArray.from_arrays(np.arange(0, d * m + 1, d, dtype=np.int32), pa.array(x.ravel())),
            pa.array(reward),
            pa.StructArray.from_arrays([pa.array(click * 1.0), pa.array(np.zeros(m))], names=list(strategies)),
        ], schema=schema)
        writer.write_table(table, row_group_size=rows_per_group)
    writer.close()


_CHILD = """
import json, os, resource, sys, time
sys.path.insert(0, {root!r})
from ltrr.offline.ope import evaluate
from ltrr.offline.targets import TargetSpec

def main():
    client = None
    if {scheduler!r}:
        from ltrr.cluster import connect
        client = connect({scheduler!r})
    t0, c0 = time.perf_counter(), time.process_time()
    r = evaluate({log!r}, [TargetSpec("greedy", {target!r}), TargetSpec("bm25_100", {fixed!r})],
                 n_bootstrap={boot}, shards={shards}, client=client, bootstrap_method={method!r})
    s = time.perf_counter() - t0
    if client is not None:
        client.close()
    flat = {{f"{{p}}/{{e}}/{{k}}": v for p, pol in r["policies"].items() for e, est in pol["estimates"].items()
            for k, v in est.items() if k in ("value", "ci_low", "ci_high") and v is not None}}
    print(json.dumps({{"seconds": s, "driver_cpu_s": time.process_time() - c0, "rounds": r["rounds"],
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "estimates": flat}}))

if __name__ == "__main__":
    main()
"""


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _scale_setup(args: argparse.Namespace, events: int) -> tuple[Path, Path, Path]:
    """The synthetic log (written once, reused) and the two saved targets."""
    from ltrr.contracts.policy import PlanMenu
    from policies.epsilon_greedy import EpsilonGreedy
    from policies.fixed import FixedPolicy

    work = ROOT / "work" / "bench"
    work.mkdir(parents=True, exist_ok=True)
    log = work / f"ope_scale_{events}.parquet"
    if not log.exists():
        t0 = time.perf_counter()
        write_synthetic_log(log, events, seed=args.seed)
        print(json.dumps({"bench": "ope_scale", "step": "write log", "events": events,
                          "seconds": round(time.perf_counter() - t0, 1),
                          "file_mb": round(log.stat().st_size / 2**20, 1)}), flush=True)
    menu = PlanMenu.build({"bm25": [0, 10, 50, 100], "memory": [0, 10, 50]}, 300)
    rng = np.random.default_rng(args.seed + 1)
    greedy = EpsilonGreedy(menu, 11, {"epsilon": 0.1})
    greedy.arms.update_all(rng.random((500, 11)), rng.random((500, menu.n_actions)))
    greedy.save(work / "scale_target_greedy")
    FixedPolicy(menu, 11, {"depths": {"bm25": 100}}).save(work / "scale_target_bm25")
    return log, work / "scale_target_greedy", work / "scale_target_bm25"


def _run_child(log: Path, target: Path, fixed: Path, boot: int, shards: int, method: str = "poisson",
               scheduler: str = "", time_v: bool = False) -> dict:
    """Evaluate in a fresh child process; wall, the CPU of the child and everything it waited
    for (Dask workers included), its peak RSS, and how many lines it printed to stderr."""
    import shutil
    import subprocess

    code = _CHILD.format(root=str(ROOT), log=str(log), target=str(target), fixed=str(fixed), boot=boot,
                         shards=shards, method=method, scheduler=scheduler)
    script = ROOT / "work" / "bench" / "ope_child.py"
    script.write_text(code)
    cmd = [sys.executable, str(script)]
    timev = shutil.which("time") if time_v else None
    if timev:
        cmd = [timev, "-v", *cmd]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    c0, l0, t0 = os.times(), _load(), time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall, c1 = time.perf_counter() - t0, os.times()
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res.update(wall_s=round(wall, 2), cpu_s=round((c1.children_user + c1.children_system)
                                                  - (c0.children_user + c0.children_system), 2),
               load_start=l0, load_end=_load(),
               stderr_lines=len([x for x in out.stderr.splitlines() if x.strip() and "Maximum resident" not in x
                                 and not x.startswith("\t")]),
               killed_workers="still alive" in out.stderr or "killing" in out.stderr.lower())
    if timev:
        for line in out.stderr.splitlines():
            if "Maximum resident set size" in line:
                res["time_v_max_rss_mb"] = round(int(line.split(":")[1]) / 1024)
    return res


def _versions() -> dict:
    import dask
    import distributed
    import pyarrow

    return {"numpy": np.__version__, "pyarrow": pyarrow.__version__, "dask": dask.__version__,
            "distributed": distributed.__version__, "python": sys.version.split()[0]}


def scale(args: argparse.Namespace) -> None:
    """Throughput and peak RSS of one process on a large log."""
    log, target, fixed = _scale_setup(args, args.scale_events)
    for boot in sorted({0, args.scale_bootstrap}):
        res = _run_child(log, target, fixed, boot, 1, time_v=True)
        print(json.dumps({"bench": "ope_scale", "events": res["rounds"], "targets": 2, "estimators": 7,
                          "bootstrap": boot, "bootstrap_method": "poisson", "shards": 1,
                          "wall_s": res["wall_s"], "cpu_s": res["cpu_s"],
                          "events_per_cpu_s": round(res["rounds"] / max(res["cpu_s"], 1e-9)),
                          "peak_rss_mb": round(res["peak_rss_mb"]),
                          "time_v_max_rss_mb": res.get("time_v_max_rss_mb"),
                          "load_start": res["load_start"], "load_end": res["load_end"],
                          "threads": "BLAS 1, pyarrow default", **_versions(),
                          "target_rss_mb": 2048}), flush=True)


def dask_speed(args: argparse.Namespace) -> None:
    """Single process vs a local Dask cluster of 2 worker processes (shards=2), interleaved
    A B A B, wall and CPU; estimates compared; then once against an external scheduler."""
    import subprocess

    log, target, fixed = _scale_setup(args, args.dask_events)
    rows = {"single": [], "dask2": []}
    for rep in range(args.repeat):
        for name, shards in (("single", 1), ("dask2", 2)):
            res = _run_child(log, target, fixed, args.dask_bootstrap, shards)
            rows[name].append(res)
            print(json.dumps({"bench": "ope_dask", "run": name, "repeat": rep, "events": res["rounds"],
                              "bootstrap": args.dask_bootstrap, "wall_s": res["wall_s"], "cpu_s": res["cpu_s"],
                              "driver_cpu_s": round(res["driver_cpu_s"], 2), "stderr_lines": res["stderr_lines"],
                              "killed_workers": res["killed_workers"], "load_start": res["load_start"],
                              "load_end": res["load_end"]}), flush=True)
    a, b = rows["single"], rows["dask2"]
    diff = max(abs(a[0]["estimates"][k] - b[0]["estimates"][k]) for k in a[0]["estimates"])
    wa, wb = np.median([r["wall_s"] for r in a]), np.median([r["wall_s"] for r in b])
    ca, cb = np.median([r["cpu_s"] for r in a]), np.median([r["cpu_s"] for r in b])
    print(json.dumps({"bench": "ope_dask", "summary": True, "events": a[0]["rounds"], "repeats": args.repeat,
                      "median_wall_single_s": wa, "median_wall_dask2_s": wb,
                      "speedup_wall": round(wa / wb, 3), "spread_wall_single": [min(r["wall_s"] for r in a), max(r["wall_s"] for r in a)],
                      "spread_wall_dask2": [min(r["wall_s"] for r in b), max(r["wall_s"] for r in b)],
                      "median_cpu_single_s": ca, "median_cpu_dask2_s": cb, "cpu_ratio_dask2_over_single": round(cb / ca, 3),
                      "max_abs_diff_estimates": diff, **_versions()}), flush=True)
    # the same against an external scheduler with two single-threaded worker processes (loopback)
    port = 8700 + os.getpid() % 200
    addr = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--no-dashboard"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    time.sleep(3)
    for _ in range(2):
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", addr, "--nthreads", "1",
                                       "--nworkers", "1", "--no-dashboard"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        time.sleep(5)
        res = _run_child(log, target, fixed, args.dask_bootstrap, 2, scheduler=addr)
        diff = max(abs(a[0]["estimates"][k] - res["estimates"][k]) for k in a[0]["estimates"])
        print(json.dumps({"bench": "ope_dask", "run": "external scheduler, 2 workers", "address": addr,
                          "wall_s": res["wall_s"], "driver_cpu_s": round(res["driver_cpu_s"], 2),
                          "max_abs_diff_vs_single": diff, "load_start": res["load_start"],
                          "load_end": res["load_end"]}), flush=True)
    finally:
        for p in procs[::-1]:
            p.terminate()
            p.wait(timeout=30)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--section", choices=("throughput", "truth", "scale", "dask", "all"), default="throughput")
    parser.add_argument("--catalog-limit", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=1500)
    parser.add_argument("--pool", type=int, default=1000)
    parser.add_argument("--truth-queries", type=int, default=4000)
    parser.add_argument("--log-queries", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--scale-events", type=int, default=1_000_000)
    parser.add_argument("--scale-bootstrap", type=int, default=10_000)
    parser.add_argument("--dask-events", type=int, default=2_000_000)
    parser.add_argument("--dask-bootstrap", type=int, default=200)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--actions", type=int, default=10)
    parser.add_argument("--len-list", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.section in ("throughput", "all"):
        throughput(args)
    if args.section in ("truth", "all"):
        truth(args)
    if args.section in ("scale", "all"):
        scale(args)
    if args.section in ("dask", "all"):
        dask_speed(args)


if __name__ == "__main__":
    main()
