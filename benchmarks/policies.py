"""Benchmark: the retrieval-plan policies.

Section ``latency`` (this part): per-decision latency of every numpy policy — one ``select`` plus
one ``update`` on a fresh context, timed with ``perf_counter_ns`` — with 16 context features and
plan menus of ~20 and ~56 plans, after a warm-up of ``--warmup`` decisions. Vowpal Wabbit's
``cb_explore_adf`` backend (squarecb, epsilon, bag) runs the same loop alongside as the reference
library; ``ratio_p99_vs_vw_squarecb`` is VW squarecb's p99 over ours (> 1 means we are faster).
Target: numpy policies p99 <= 200 µs. Wall-clock percentiles (``p50_us``/``p99_us``) include
preemption by other processes; ``cpu_p*_us`` use the thread's CPU clock, which does not count time
spent descheduled, and are the fairer number on a shared machine. One JSON line per result.

Section ``synthetic``: every policy for ``--rounds`` rounds on a seeded contextual world whose
query types favour different strategies (see :class:`SyntheticWorld`): reward per round, regret
against the best fixed plan in hindsight and against the per-type oracle, the regret slope of the
second half over the first, candidates drawn relative to "every strategy at maximum depth", and
LinUCB's total reward over VW squarecb's.

Section ``movies``: the policies online through real Engines on the movie catalog's query stream
(:class:`simulators.movies.MovieQueryGenerator`, PBM/navigational clicks), with the demo config's
strategies (BM25, click memory) plus dense and XR-Linear; stateless indexes are fitted once and
shared (dense and xmr cached under ``--movies-out``). Per run: cumulative clicks, nDCG@10, mean
candidates, strategy share per query type over windows, and regret on a full-information table of
plan values built with the engine's own ranker (:mod:`simulators.hindsight`): on the
all-at-max-depth pass every menu plan's page is recomputed each round and valued with the engine's
reward in expectation. Regret is reported against the best fixed plan in hindsight, the best plan
per query type and the per-round oracle, each with the slope of its second half over its first.
Baselines run for real: each strategy alone, all at maximum depth, RRF, and the best fixed plan.
Runs can be split over processes with ``--only`` (traces saved as ``.npz``; the table comes from
the ``all_max`` run), baselines shortened with ``--prefix``, and reported with ``--report-only``.
``--section all`` runs every section.

    .venv/bin/python benchmarks/policies.py [--section latency] [--decisions 5000]
    .venv/bin/python benchmarks/policies.py --section movies --rounds 20000 [--only linucb]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # single-threaded BLAS: small matrices, shared machine

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.conditions import code_version  # noqa: E402
from ltrr import registry  # noqa: E402
from ltrr.builder import plan_menu  # noqa: E402
from ltrr.contracts.policy import PlanMenu  # noqa: E402
from simulators.hindsight import (  # noqa: E402
    HindsightPlanValuer,
    HindsightRecorder,
    HindsightTable,
    regret_curve_summary,
    valued_plans,
)

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
    ("factored", {"exploration": "softmax", "temperature": 0.02}),
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


class SyntheticWorld:
    """A seeded contextual world: ``n_types`` query types, type ``t`` favours strategy ``t``.

    Context: one-hot type, a bias and ``N_FEATURES - n_types - 1`` Gaussian distractors. The
    clicked item's rank in the favoured strategy is geometric (p = 0.08); in any other strategy
    uniform on 1..1000. Strategy ``s`` at depth ``d`` finds it if its rank <= d; the plan reward
    is found-by-any minus ``cost`` per candidate, the strategy reward found-by-s minus its cost.
    """

    def __init__(self, menu: PlanMenu, seed: int, cost: float = 0.002):
        self.menu, self.cost = menu, cost
        self.n_types = len(menu.strategies)
        self.rng = np.random.default_rng(seed)
        d = menu.plans.astype(float)
        s_idx = np.arange(self.n_types)
        self.expected = np.empty((self.n_types, menu.n_actions))
        for t in range(self.n_types):
            q = np.where(s_idx[None, :] == t, 1.0 - 0.92 ** d, np.minimum(d, 1000.0) / 1000.0)
            self.expected[t] = 1.0 - np.prod(1.0 - q, axis=1) - cost * d.sum(axis=1)

    def context(self) -> tuple[int, np.ndarray]:
        t = int(self.rng.integers(self.n_types))
        x = np.zeros(N_FEATURES)
        x[t] = 1.0
        x[self.n_types] = 1.0
        x[self.n_types + 1:] = self.rng.normal(0.0, 0.3, N_FEATURES - self.n_types - 1)
        return t, x

    def outcome(self, t: int, depths: tuple[int, ...]) -> tuple[float, np.ndarray]:
        n_s = len(depths)
        ranks = np.where(np.arange(n_s) == t, self.rng.geometric(0.08, n_s), self.rng.integers(1, 1001, n_s))
        d = np.asarray(depths)
        found = (ranks <= d) & (d > 0)
        reward = float(found.any()) - self.cost * float(d.sum())
        return float(np.clip(reward, -1, 1)), np.clip(found - self.cost * d, -1, 1)


def synthetic(args: argparse.Namespace) -> None:
    """Every learned policy and the fixed-plan baselines on the seeded synthetic world.

    Regrets are pseudo-regrets on expected rewards: against the best fixed plan in hindsight
    (full information: the plan with the highest mean expected reward over the rounds played)
    and against the per-type best plan (the contextual oracle). ``slope_ratio`` is the oracle
    regret's slope over the second half of the rounds divided by its slope over the first half
    (< 1 means the regret grows sublinearly).
    """
    options, budget = MENUS["large"]
    menu = PlanMenu.build(options, budget)
    rounds = args.rounds
    types = np.empty(rounds, dtype=np.int64)
    contexts = np.empty((rounds, N_FEATURES))
    world = SyntheticWorld(menu, args.seed)
    for i in range(rounds):
        types[i], contexts[i] = world.context()
    per_plan = world.expected[types]  # (rounds, plans) expected reward of every plan
    best_fixed = int(np.argmax(per_plan.mean(axis=0)))
    oracle = per_plan.max(axis=1)
    max_depth = int(sum(max(o) for o in menu.options))
    results = {}
    for name, params in [*NUMPY_POLICIES, *VW_POLICIES]:
        pol = registry.get("policy", name)(menu, N_FEATURES, params)
        outcomes = SyntheticWorld(menu, args.seed + 1)  # the same click draws for every policy
        rng = np.random.default_rng(args.seed + 2)
        chosen = np.empty(rounds, dtype=np.int64)
        t0 = time.perf_counter()
        for i in range(rounds):
            plan = pol.select(contexts[i], rng)
            r, sr = outcomes.outcome(int(types[i]), plan.depths)
            pol.update(contexts[i], plan, r, sr)
            chosen[i] = plan.action
        seconds = time.perf_counter() - t0
        got = per_plan[np.arange(rounds), chosen]
        regret = np.cumsum(oracle - got)
        results[(name, json.dumps(params, sort_keys=True))] = got.sum()
        print(json.dumps({
            "bench": "policy_synthetic", "policy": name, "params": params, "rounds": rounds,
            "n_plans": menu.n_actions, "expected_reward_per_round": round(float(got.mean()), 4),
            "last_quarter_reward": round(float(got[-rounds // 4:].mean()), 4),
            "regret_vs_best_fixed": round(float((per_plan[:, best_fixed] - got).sum()), 1),
            "regret_vs_oracle": round(float(regret[-1]), 1),
            "slope_ratio": regret_curve_summary(regret)["slope_ratio"],
            "regret_vs_best_fixed_curve": regret_curve_summary(np.cumsum(per_plan[:, best_fixed] - got)),
            "mean_candidates": round(float(menu.plans[chosen].sum(axis=1).mean()), 1),
            "candidates_vs_all_max": round(float(menu.plans[chosen].sum(axis=1).mean() / max_depth), 3),
            "seconds": round(seconds, 2),
        }), flush=True)
    print(json.dumps({
        "bench": "policy_synthetic_baselines", "rounds": rounds,
        "best_fixed_plan": dict(zip(menu.strategies, menu.plans[best_fixed].tolist(), strict=True)),
        "best_fixed_reward_per_round": round(float(per_plan[:, best_fixed].mean()), 4),
        "oracle_reward_per_round": round(float(oracle.mean()), 4),
        "uniform_reward_per_round": round(float(per_plan.mean()), 4),
        "linucb_over_vw_squarecb": round(float(results[("linucb", "{}")]
                                               / results[("vw", json.dumps({"exploration": "squarecb"}))]), 3),
    }), flush=True)


# ---------------------------------------------------------------------------------------------
# Section ``movies``: the policies online on the movie catalog's query stream, through real Engines

#: (label, registry type, params); scales suit the demo's click_dcg reward (a click at rank 1 ~ 0.22)
MOVIE_POLICIES: list[tuple[str, str, dict]] = [
    ("epsilon_greedy", "epsilon_greedy", {"epsilon": 0.05}),
    ("epsilon_greedy_decaying", "epsilon_greedy", {"epsilon": 0.1, "decay_after": 1000}),
    ("linucb", "linucb", {"alpha": 0.1}),
    ("thompson", "thompson", {"scale": 0.1}),
    ("softmax", "softmax", {"temperature": 0.02}),
    ("factored", "factored", {"epsilon": 0.05}),
    ("factored_full_credit", "factored", {"epsilon": 0.05}),
    ("factored_decaying", "factored", {"epsilon": 0.05, "decay_after": 1000}),
    ("vw_squarecb", "vw", {"exploration": "squarecb"}),
]
#: runs whose engine config differs from the demo's beyond the policy: label -> reward overrides
MOVIE_REWARD_OVERRIDES: dict[str, dict] = {"factored_full_credit": {"credit": "full"}}
MOVIE_WINDOWS = 4  # strategy share per query type is reported over this many equal windows


def movie_config(with_xmr: bool = True) -> dict:
    """The demo config (``ltrr config show``: BM25, click memory, dense, XR-Linear), optionally
    without XR-Linear, with an in-memory event log."""
    import copy

    from ltrr.config import DEFAULT_CONFIG

    cfg = copy.deepcopy(DEFAULT_CONFIG)
    if not with_xmr:
        cfg["strategies"] = [s for s in cfg["strategies"] if s["name"] != "xmr"]
    for s in cfg["strategies"]:
        if s["name"] == "dense":
            s["params"] = {**s.get("params", {}), "progress": False}
    cfg["store"] = {"events_path": ""}
    return cfg


def shared_strategies(config, catalog, cache: Path) -> dict:
    """Fit every stateless strategy once (dense and xmr are saved under ``cache`` and loaded by
    later runs with the same parameters: encoding the catalog and training the XR tree take
    minutes)."""
    from ltrr import registry
    from ltrr.params import validate_params

    out = {}
    for i, sc in enumerate(config.strategies):
        klass = registry.get("strategy", sc.kind)
        if getattr(klass, "stateful", False):
            continue
        where = cache / f"strategy_{sc.name}"
        params = validate_params(klass.Params, dict(sc.params), f"strategies[{i}] ({sc.name}).params")
        if sc.kind in ("dense", "xmr") and (where / "manifest.json").exists():
            saved = json.loads((where / "manifest.json").read_text(encoding="utf-8")).get("params")
            if saved == json.loads(params.model_dump_json()):
                out[sc.name] = klass.load(where)
                continue
        t0 = time.perf_counter()
        out[sc.name] = klass(params, name=sc.name).fit(catalog)
        print(json.dumps({"bench": "policy_movies_fit", "strategy": sc.name,
                          "seconds": round(time.perf_counter() - t0, 1)}), file=sys.stderr, flush=True)
        if sc.kind in ("dense", "xmr"):
            out[sc.name].save(where)
    return out


def _windows(depths: np.ndarray, qtypes: np.ndarray, strategies, n_windows: int) -> dict:
    edges = np.linspace(0, depths.shape[0], n_windows + 1).astype(int)
    out = {}
    for t in sorted(set(qtypes.tolist())):
        rows = []
        for w in range(n_windows):
            m = np.zeros(depths.shape[0], bool)
            m[edges[w]:edges[w + 1]] = True
            m &= qtypes == t
            share = (depths[m] > 0).mean(axis=0) if m.any() else np.full(len(strategies), np.nan)
            rows.append({s: round(float(v), 3) for s, v in zip(strategies, share, strict=True)})
        out[t] = rows
    return out


def movies(args: argparse.Namespace) -> None:
    """Every policy online for ``--rounds`` rounds on the movie query stream (see module doc)."""
    from ltrr.catalog import Catalog
    from ltrr.config import parse_config
    from ltrr.engine import Engine
    from simulators.environment import run_session
    from simulators.movies import MovieQueryGenerator
    from simulators.session import make_click_model

    cache = Path(args.movies_out)
    cache.mkdir(parents=True, exist_ok=True)
    config = parse_config(movie_config(not args.no_xmr), "<movies benchmark config>")
    if args.retrain_every is not None or args.train_window is not None:
        ranker = {"retrain_every": args.retrain_every or config.ranker.retrain_every,
                  "train_window": args.train_window or config.ranker.train_window}
        config = config.model_copy(update={"ranker": config.ranker.model_copy(update=ranker)})
    catalog = Catalog.from_jsonl(config.catalog.path)
    rounds = args.rounds
    gen = MovieQueryGenerator(catalog, seed=args.seed)
    stream = gen.stream(rounds, max(rounds // 4, 1), seed=args.seed)
    qtypes = np.array([q.qtype for q in stream])
    # every cached result is keyed by the code version and a hash of the full config (and of the
    # run's own policy and reward overrides, below): a change to either recomputes it
    version = code_version(("benchmarks/policies.py",))
    config_hash = hashlib.sha1(json.dumps([config.model_dump(mode="json"), rounds, args.seed, args.prefix],
                                          sort_keys=True, default=str).encode()).hexdigest()[:12]
    shared = shared_strategies(config, catalog, cache / f"strategies_{version}")
    cost = config.reward.cost_per_candidate
    menu = plan_menu(config)
    plans = valued_plans(menu)  # the menu's plans first, then the fixed baselines outside it
    plan_index = {tuple(p): a for a, p in enumerate(plans.tolist())}
    tag = f"r{rounds}_s{args.seed}_{version}_{config_hash}"
    click_model = make_click_model("pbm", "navigational")

    def run_paths(label: str, type_: str, params: dict) -> tuple[Path, Path]:
        """A run's trace and hindsight-table files, keyed by ``tag`` and the run's own settings."""
        run_hash = hashlib.sha1(json.dumps([type_, params, MOVIE_REWARD_OVERRIDES.get(label)], sort_keys=True,
                                           default=str).encode()).hexdigest()[:8]
        return cache / f"{label}_{tag}_{run_hash}.npz", cache / f"{label}_table_{tag}_{run_hash}.npz"

    ranker_table_path = run_paths("all_max", "fixed", {})[1]  # the common full-information table
    fusion = {"rrf", "weighted_fusion"}  # runs whose pages the ranker does not order: no table

    def run(label: str, type_: str, params: dict) -> dict | None:
        """One online run; ranker-ordered runs also record their own hindsight table (every
        plan's value on every round, in the run's own world; the run itself is unchanged)."""
        path, table_path = run_paths(label, type_, params)
        record = type_ not in fusion
        if path.exists() and (table_path.exists() or not record):
            with np.load(path, allow_pickle=False) as z:
                out = {k: z[k] for k in z.files}
            if record:
                out["table"] = HindsightTable.load(table_path)
            return out
        if args.report_only:
            return None
        run_config = config.with_policy(type_, params)
        if label in MOVIE_REWARD_OVERRIDES:
            run_config = run_config.model_copy(update={"reward": run_config.reward.model_copy(
                update=MOVIE_REWARD_OVERRIDES[label])})
        # each run gets its own query caches (the fitted indexes are shared read-only): a run
        # must not answer from embeddings a previous run computed
        engine = Engine.from_config(run_config, catalog=catalog,
                                    prebuilt={name: s.with_fresh_caches() for name, s in shared.items()})
        rec = None
        part = stream[: args.prefix] if args.prefix else stream
        if record:
            valuer = HindsightPlanValuer(plans, menu.strategies, engine.features.schema, click_model,
                                         kind=config.reward.kind, cost_per_candidate=cost, k=config.page_size,
                                         match_when_off=config.ranker.match_when_off)
            rec = HindsightRecorder(engine, [q.relevant for q in part], valuer)
        t0 = time.perf_counter()
        res = run_session(engine, part, click_model, seed=args.seed,
                          policy_name=label, progress=args.progress, observer=rec)
        seconds = time.perf_counter() - t0
        engine.close()
        actions = np.array([plan_index.get(tuple(d), -1) for d in res.depths.tolist()], dtype=np.int64)
        out = {"ndcg": res.ndcg, "clicks": res.clicks, "n_candidates": res.n_candidates,
               "drawn": res.depth_drawn, "depths": res.depths, "actions": actions,
               "latency_ms": res.latency_ms, "seconds": np.array(seconds)}
        if rec is not None:
            out["table"] = rec.table()
            out["table"].save(table_path)
        np.savez(path, **{k: v for k, v in out.items() if k != "table"})
        return out

    only = set(args.only.split(",")) if args.only else None

    def wanted(label: str) -> bool:
        return only is None or label in only

    # 1. the full-information pass: every strategy at its maximum depth; every plan valued per round
    results: dict[str, dict] = {}
    if wanted("all_max"):
        res = run("all_max", "fixed", {})
        if res is not None:
            results["all_max"] = res
    specs = [(f"{s.name}_only", "fixed", {"depths": {s.name: max(s.depths)}}) for s in config.strategies]
    specs += [("rrf_all_max", "rrf", {})]
    specs += MOVIE_POLICIES
    if not ranker_table_path.exists():  # a partial run in parallel with the full-information pass
        for label, type_, params in specs:
            if wanted(label):
                run(label, type_, params)
        return
    table = HindsightTable.load(ranker_table_path)
    if not np.array_equal(table.plans, plans):
        raise SystemExit(f"{ranker_table_path} values other plans than this menu: delete it and rerun")
    value, table_ndcg, table_cands = table.value, table.ndcg, table.n_candidates
    n_menu = menu.n_actions  # the menu's plans come first
    best = table.best_fixed(n_menu)
    best_plan = dict(zip(menu.strategies, plans[best].tolist(), strict=True))
    best_nz = {s: d for s, d in best_plan.items() if d > 0}
    best_by_type = table.best_by_type(qtypes, n_menu)

    # 2. the real runs: baselines and learned policies
    specs.append(("best_fixed", "fixed", {"depths": best_nz}))
    for label, type_, params in specs:
        if wanted(label):
            res = run(label, type_, params)
            if res is not None:
                results[label] = res
    if args.only:  # a partial run (e.g. one process per policy): traces saved, report later
        return

    max_total = int(plans.sum(axis=1).max())
    all_max_cands = float(results["all_max"]["n_candidates"].mean()) if "all_max" in results else float("nan")
    a_max = plan_index[tuple(max(o) for o in menu.options)]
    check = {}
    if "all_max" in results:  # the table's all-at-max page is the page the recorded run showed
        run_ndcg = results["all_max"]["ndcg"]
        check = {"all_max_table_ndcg_equals_run_ndcg": bool(np.allclose(table_ndcg[:, a_max], run_ndcg,
                                                                        equal_nan=True)),
                 "all_max_table_candidates_equal_run": bool(np.array_equal(table_cands[:, a_max],
                                                                           results["all_max"]["n_candidates"]))}
    print(json.dumps({
        "bench": "policy_movies_fullinfo", "rounds": rounds, "n_plans": n_menu,
        "n_plans_valued": int(plans.shape[0]),
        "strategies": list(menu.strategies), "cost_per_candidate": cost, "reward_kind": config.reward.kind,
        "method": ("full information with the engine's own ranker (simulators.hindsight): on every round of "
                   "every ranker-ordered run, each plan's page is recomputed - the union of each strategy's "
                   "prefix of the plan's depth (from a shadow max-depth retrieval that changes nothing), "
                   "provenance features masked, scored by the ranker live on that round, ordered as the "
                   "engine orders - and valued as the engine's reward in expectation under PBM/navigational "
                   "minus cost_per_candidate x depth drawn. Per run: regret against the best fixed menu plan "
                   "in hindsight on its own table (the world its own choices shaped: ranker and memory), "
                   "against the best plan per query type, and per round; also on the all-max pass's table, "
                   "a common yardstick (this line describes that table)."),
        **check,
        "best_fixed_plan": best_plan,
        "best_fixed_value_per_round": round(float(value[:, best].mean()), 4),
        "best_fixed_table_ndcg@10": round(float(np.nanmean(table_ndcg[:, best])), 4),
        "best_fixed_table_candidates": round(float(table_cands[:, best].mean()), 1),
        "all_max_value_per_round": round(float(value[:, a_max].mean()), 4),
        "all_max_table_ndcg@10": round(float(np.nanmean(table_ndcg[:, a_max])), 4),
        "best_plan_per_query_type_value_per_round": round(float(
            value[np.arange(rounds), [best_by_type[t] for t in qtypes.tolist()]].mean()), 4),
        "per_round_best_plan_value_per_round": round(float(value[:, :n_menu].max(axis=1).mean()), 4),
        "best_plan_by_query_type": {t: dict(zip(menu.strategies, plans[a].tolist(), strict=True))
                                    for t, a in best_by_type.items()},
    }), flush=True)
    table_value, regrets = {}, {}
    for label, res in results.items():
        actions = np.array([plan_index.get(tuple(d), -1) for d in res["depths"].tolist()], dtype=np.int64)
        n_r = actions.size  # a baseline may have run on a prefix of the stream (--prefix)
        line = {
            "bench": "policy_movies", "policy": label, "rounds": n_r,
            "learned": label in {p[0] for p in MOVIE_POLICIES},
            "cumulative_clicks": int(res["clicks"].sum()),
            "ndcg@10": round(float(np.nanmean(res["ndcg"])), 4),
            "ndcg@10_last_half": round(float(np.nanmean(res["ndcg"][n_r // 2:])), 4),
            "mean_candidates": round(float(res["n_candidates"].mean()), 1),
            "mean_depth_drawn": round(float(res["drawn"].mean()), 1),
            "candidates_vs_all_max": round(float(res["n_candidates"].mean()) / all_max_cands, 3),
            "seconds": round(float(res["seconds"]), 1),
        }
        own = res.get("table")
        if own is not None and (actions >= 0).all():
            # regret in the run's own world: every plan valued on every round with the ranker and
            # memory this run had then; the best fixed plan in hindsight is the best on that table
            r = own.regret(res["depths"], qtypes, n_menu)
            t = np.arange(n_r)
            line.update({
                "table_reproduces_run": bool(np.allclose(own.ndcg[t, actions], res["ndcg"], equal_nan=True)),
                "value_per_round": r["value_per_round"],
                "best_fixed_plan_in_hindsight": dict(zip(menu.strategies, plans[own.best_fixed(n_menu)].tolist(),
                                                         strict=True)),
                "best_fixed_value_per_round": round(float(own.value[:, own.best_fixed(n_menu)].mean()), 5),
                "regret_vs_best_fixed": r["vs_best_fixed"],
                "regret_vs_best_plan_per_query_type": r["vs_best_plan_per_query_type"],
                "regret_vs_per_round_best_plan": r["vs_per_round_best_plan"],
            })
            regrets[label] = r
            # and on the common table of the all-max pass (the same yardstick for every run)
            c = table.regret(res["depths"], qtypes, n_menu)
            table_value[label] = c["value_per_round"]
            line.update({"all_max_table_value_per_round": c["value_per_round"],
                         "all_max_table_regret_vs_best_fixed": c["vs_best_fixed"],
                         "all_max_table_regret_vs_best_plan_per_query_type": c["vs_best_plan_per_query_type"]})
        if line["learned"] or label == "all_max":
            line["strategy_share_by_query_type_windows"] = _windows(res["depths"], qtypes[:n_r], menu.strategies,
                                                                  MOVIE_WINDOWS)
        print(json.dumps(line), flush=True)
    learned = [p[0] for p in MOVIE_POLICIES if p[0] in results]
    if learned and {"best_fixed", "all_max"} <= set(results):
        # compare on the rounds every compared run played (baselines may have run on a prefix)
        n_c = min(len(results[n]["ndcg"]) for n in [*learned, "best_fixed", "all_max"])

        def m(label: str, key: str = "ndcg") -> float:
            return float(np.nanmean(results[label][key][:n_c]))

        best_learned = max(learned, key=lambda n: m(n))
        am = m("all_max", "n_candidates")
        print(json.dumps({
            "bench": "policy_movies_targets", "rounds_compared": n_c, "best_learned": best_learned,
            "best_learned_ndcg@10": round(m(best_learned), 4),
            "best_fixed_ndcg@10": round(m("best_fixed"), 4),
            "all_max_ndcg@10": round(m("all_max"), 4),
            "learned_ndcg@10": {n: round(m(n), 4) for n in learned},
            "meets_ndcg_vs_best_fixed": bool(m(best_learned) >= m("best_fixed")),
            "best_learned_candidates_vs_all_max": round(m(best_learned, "n_candidates") / am, 3),
            "meets_candidates_le_60pct": bool(m(best_learned, "n_candidates") <= 0.6 * am),
            "regret_own_world_vs_best_fixed": {n: regrets[n]["vs_best_fixed"] for n in learned if n in regrets},
            "regret_slope_second_half_below_first_half": {
                n: {k: regrets[n][k]["second_half_slope_below_first"]
                    for k in ("vs_best_fixed", "vs_best_plan_per_query_type")} for n in learned if n in regrets},
            "linucb_over_vw_squarecb_all_max_table_value": (
                round(table_value["linucb"] / table_value["vw_squarecb"], 3)
                if {"linucb", "vw_squarecb"} <= set(table_value) else None),
            "linucb_minus_vw_squarecb_clicks": (
                int(results["linucb"]["clicks"].sum() - results["vw_squarecb"]["clicks"].sum())
                if {"linucb", "vw_squarecb"} <= set(results) else None),
            "linucb_minus_vw_squarecb_ndcg@10": (
                round(m("linucb") - m("vw_squarecb"), 4) if {"linucb", "vw_squarecb"} <= set(results) else None),
            "max_plan_candidates": max_total,
        }), flush=True)


#: name -> function(args); the simulator comparison on the movie stream is added here
SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {
    "latency": latency,
    "synthetic": synthetic,
    "movies": movies,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--section", choices=[*SECTIONS, "all"], default="all")
    parser.add_argument("--decisions", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=20000, help="rounds of the synthetic section")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--movies-out", default=str(ROOT / "runs" / "bench_policies_movies"),
                        help="movies: directory of per-run traces and the fitted dense/xmr indexes")
    parser.add_argument("--only", default=None,
                        help="movies: comma-separated run labels to run now (traces saved, no report)")
    parser.add_argument("--no-xmr", action="store_true", help="movies: leave XR-Linear out of the menu")
    parser.add_argument("--retrain-every", type=int, default=None,
                        help="movies: override ranker.retrain_every")
    parser.add_argument("--train-window", type=int, default=None, help="movies: override ranker.train_window")
    parser.add_argument("--prefix", type=int, default=None,
                        help="movies: run the --only labels on the first N rounds of the stream only")
    parser.add_argument("--report-only", action="store_true",
                        help="movies: report the saved traces, run nothing missing")
    parser.add_argument("--progress", action="store_true", help="movies: progress bars")
    args = parser.parse_args(argv)
    for name, run in SECTIONS.items():
        if args.section in (name, "all"):
            run(args)


if __name__ == "__main__":
    main()
