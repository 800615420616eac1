"""Online comparisons of policies: the same seeded query stream through one fresh engine per
policy, summarized into one report.

Runs must not leak state into each other: an index that never changes after fitting (BM25, dense,
...) is fitted once and shared, but every strategy that learns from feedback
(:class:`~ltrr.contracts.strategy.LearnsFromFeedback`: the click memory, XR-Linear with its click
buffer and retrained models) starts each run from its own copy of the first fit, loaded from a
saved template. Event ids are seeded, so the same seed gives the same logs.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ltrr import registry
from ltrr.builder import plan_menu
from ltrr.catalog import Catalog
from ltrr.config import EngineConfig
from ltrr.contracts.strategy import CandidateGenerator, LearnsFromFeedback
from ltrr.engine import Engine
from simulators.environment import SessionResult, run_session
from simulators.hindsight import (
    HindsightPlanValuer,
    HindsightRecorder,
    HindsightTable,
    valued_plans,
)
from simulators.movies import SimQuery

#: the incumbent switched off: a baseline run measures its own ranker, not the gate's choice
NO_INCUMBENT = {"gate_ranking": False, "gate_plans": False}


@dataclass(frozen=True)
class PolicySpec:
    """A policy to compare: display name, registry type and params, and overrides of the
    config's ``[incumbent]`` section (None: the config's own, the default engine behaviour)."""

    label: str
    type: str
    params: dict[str, Any]
    incumbent: dict[str, Any] | None = None


def baseline_specs(config: EngineConfig) -> list[PolicySpec]:
    """The configuration under test and the baselines a user compares it with.

    * the config's learned policy, as the engine runs by default (with its incumbent);
    * ``<strategy>_only``: each strategy alone at its largest depth, in the strategy's own order;
    * ``all_max``: every strategy at its largest depth, ordered by the learned ranker from the
      start (no incumbent: this run measures the ranker);
    * ``rrf_all_max``: the same union ordered by reciprocal rank fusion (the unsupervised hybrid,
      and the incumbent's default baseline).
    """
    specs = [PolicySpec(config.policy.type, config.policy.type, dict(config.policy.params))]
    for s in config.strategies:
        specs.append(PolicySpec(f"{s.name}_only", "rrf", {"depths": {s.name: max(s.depths)}}, NO_INCUMBENT))
    specs.append(PolicySpec("all_max", "fixed", {}, NO_INCUMBENT))
    if len(config.strategies) > 1:
        specs.append(PolicySpec("rrf_all_max", "rrf", {}, NO_INCUMBENT))
    return specs


def deterministic(config: EngineConfig) -> EngineConfig:
    """``config`` made repeatable for a simulation: seeded event ids, and plan latency from the
    strategies' declared costs (measured milliseconds vary from run to run and would steer the
    policy differently; a simulation with measured latency could not be repeated)."""
    store = config.store.model_copy(update={"event_ids": "seeded"})
    policy = config.policy.model_copy(update={"latency_source": "declared"})
    return config.model_copy(update={"store": store, "policy": policy})


def fresh_copies(templates: dict[str, tuple[type[CandidateGenerator], Path]]) -> dict[str, CandidateGenerator]:
    """An independent copy of every learning strategy, loaded from its saved first fit (loading
    is far cheaper than fitting, e.g. an XR-Linear tree)."""
    return {name: klass.load(path) for name, (klass, path) in templates.items()}


def make_click_model(name: str, preset: str):
    return registry.get("click_model", name)(preset=preset)


DERIVED_RELEVANCE = ("Relevance is derived from catalog fields by the query generator, not human "
                     "judgments; all numbers are bandit feedback measured online against that truth.")


def compare_policies(config: EngineConfig, catalog: Catalog, stream: Sequence[SimQuery],
                     click_model_name: str = "pbm", preset: str = "navigational",
                     specs: Sequence[PolicySpec] | None = None, seed: int = 0,
                     progress: bool = True, relevance: str = DERIVED_RELEVANCE, repeatable: bool = True
                     ) -> tuple[list[SessionResult], dict[str, Any]]:
    """Run every policy of ``specs`` online on ``stream``; return traces and the report dict."""
    specs = list(specs or baseline_specs(config))
    if repeatable:  # seeded ids and declared latency; a latency benchmark measures instead
        config = deterministic(config)
    else:
        config = config.model_copy(update={"store": config.store.model_copy(update={"event_ids": "seeded"})})
    shared: dict[str, CandidateGenerator] = {}
    results: list[SessionResult] = []
    table: HindsightTable | None = None
    recorder: HindsightRecorder | None = None
    with tempfile.TemporaryDirectory(prefix="ltrr-templates-") as tmp:
        templates: dict[str, tuple[type[CandidateGenerator], Path]] = {}
        for spec in specs:
            cfg = config.with_policy(spec.type, spec.params)
            if spec.incumbent is not None:
                cfg = cfg.model_copy(update={"incumbent": cfg.incumbent.model_copy(update=spec.incumbent)})
            # shared indexes with empty request caches: a run never answers from another's cache
            prebuilt = {name: s.with_fresh_caches() for name, s in shared.items()}
            engine = Engine.from_config(cfg, catalog=catalog, prebuilt={**prebuilt, **fresh_copies(templates)})
            for name, strat in engine.strategies.items():
                if not isinstance(strat, LearnsFromFeedback):
                    shared.setdefault(name, strat)
                elif name not in templates:
                    strat.save(Path(tmp) / name)
                    templates[name] = (type(strat), Path(tmp) / name)
            click_model = make_click_model(click_model_name, preset)
            if spec.type == "fixed" and not spec.params.get("depths") and table is None:
                # every strategy at its maximum depth: value every plan on this pass (hindsight)
                menu = engine.policy.menu
                valuer = HindsightPlanValuer(valued_plans(menu), menu.strategies, engine.features.schema,
                                             click_model, kind=config.reward.kind,
                                             cost_per_candidate=config.reward.cost_per_candidate,
                                             k=config.page_size,
                                             match_when_off=config.ranker.match_when_off)
                recorder = HindsightRecorder(engine, [q.relevant for q in stream], valuer)
            res = run_session(engine, stream, click_model, seed=seed, policy_name=spec.label,
                              progress=progress, observer=recorder if table is None else None)
            if recorder is not None and table is None:
                table = recorder.table()
            results.append(res)
            engine.close()
    report = {
        "queries": len(stream),
        "seed": seed,
        "click_model": {"name": click_model_name, "preset": preset},
        "strategies": [s.name for s in config.strategies],
        "budget": config.policy.budget,
        "policies": {r.policy: r.summary() for r in results},
        "notes": relevance,
    }
    if table is not None:
        report["hindsight"] = hindsight_report(table, config, results, specs, [q.qtype for q in stream])
    return results, report


def hindsight_report(table: HindsightTable, config: EngineConfig, results: Sequence[SessionResult],
                     specs: Sequence[PolicySpec], qtypes: Sequence[str]) -> dict[str, Any]:
    """The best fixed plan in hindsight and every ranker-ordered run's pseudo-regret against it
    (and against the best plan per query type) on the table recorded on the all-max pass."""
    menu = plan_menu(config)
    strategies = [s.name for s in config.strategies]
    fusion = {s.label for s in specs if s.type in ("rrf", "weighted_fusion")}
    best = table.best_fixed(menu.n_actions)
    out: dict[str, Any] = {
        "method": ("on the all-max pass every menu plan's page is recomputed each round with the ranker "
                   "live then (simulators.hindsight) and valued as the engine's reward in expectation "
                   "under the click model; regret = sum over rounds of the best fixed plan's value minus "
                   "the chosen plan's value on that table"),
        "best_fixed_plan": dict(zip(strategies, table.plans[best].tolist(), strict=True)),
        "best_fixed_value_per_round": round(float(table.value[:, best].mean()), 5),
        "best_plan_by_query_type": {t: dict(zip(strategies, table.plans[a].tolist(), strict=True))
                                    for t, a in table.best_by_type(qtypes, menu.n_actions).items()},
        "regret": {},
    }
    for res in results:
        if res.policy in fusion or (table.actions_of(res.depths) < 0).any():
            continue
        out["regret"][res.policy] = table.regret(res.depths, qtypes, menu.n_actions)
    return out


#: per-policy numbers averaged over seeds by :func:`aggregate_reports`
AGGREGATED = ("ndcg@10", "ndcg@10_final", "ndcg@10_second_half", "candidate_recall", "mean_candidates",
              "mean_candidates_final", "clicks_per_query", "latency_p50_ms", "latency_p99_ms",
              "learned_ranking_share_final", "learned_plan_share_final")
#: the window (rounds) and the first round of the "never below a share of the baseline" check
SAFETY_WINDOW, SAFETY_FROM = 200, 500


def compare_over_seeds(config: EngineConfig, catalog: Catalog, streams: Mapping[int, Sequence[SimQuery]],
                       click_model_name: str = "pbm", preset: str = "navigational",
                       specs: Sequence[PolicySpec] | None = None, progress: bool = True,
                       relevance: str = DERIVED_RELEVANCE
                       ) -> tuple[dict[int, list[SessionResult]], dict[str, Any]]:
    """:func:`compare_policies` once per seed (its stream, clicks and engine seed), and the
    report averaged over seeds (:func:`aggregate_reports`)."""
    runs: dict[int, list[SessionResult]] = {}
    reports: dict[int, dict[str, Any]] = {}
    for seed, stream in streams.items():
        cfg = config.model_copy(update={"seed": int(seed)})
        runs[seed], reports[seed] = compare_policies(cfg, catalog, stream, click_model_name, preset, specs,
                                                     int(seed), progress, relevance)
    return runs, aggregate_reports(reports, runs, config.policy.type)


def aggregate_reports(reports: Mapping[int, dict[str, Any]], runs: Mapping[int, Sequence[SessionResult]],
                      learned: str) -> dict[str, Any]:
    """Mean and standard deviation over seeds of every per-policy number, each seed's report
    under ``per_seed``, and the learning checks (:func:`learning_checks`)."""
    seeds = sorted(reports)
    first = reports[seeds[0]]
    out: dict[str, Any] = {k: first[k] for k in ("queries", "click_model", "strategies", "budget", "notes")}
    out["seeds"] = seeds
    if "hindsight" in first:  # every seed's table is in per_seed; the first is shown
        out["hindsight"] = first["hindsight"]
        out["hindsight_seed"] = seeds[0]
    policies: dict[str, Any] = {}
    for name in first["policies"]:
        per = [reports[s]["policies"][name] for s in seeds]
        agg: dict[str, Any] = {"policy": name, "queries": per[0]["queries"], "final_window": per[0]["final_window"]}
        for key in AGGREGATED:
            vals = [p[key] for p in per if key in p]
            if vals:
                agg[key] = float(np.mean(vals))
                agg[f"{key}_sd"] = float(np.std(vals))
                agg[f"{key}_by_seed"] = [round(float(v), 5) for v in vals]
        agg["incumbent_switches_by_seed"] = [p.get("incumbent_switches", []) for p in per]
        policies[name] = agg
    out["policies"] = policies
    out["checks"] = learning_checks(policies, runs, learned)
    out["per_seed"] = {str(s): reports[s] for s in seeds}
    return out


def _rolling(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of each window of ``window`` consecutive rounds, indexed by its last round."""
    c = np.concatenate([[0.0], np.cumsum(np.nan_to_num(values, nan=0.0))])
    return (c[window:] - c[:-window]) / window


def learning_checks(policies: Mapping[str, Any], runs: Mapping[int, Sequence[SessionResult]],
                    learned: str) -> dict[str, Any]:
    """The numbers the learning claims rest on (issue: "learning that wins on real human
    judgments"), from the final-window means over seeds: the learned configuration's margin over
    the best single strategy and over RRF of the menu, its candidates as a share of all-at-max's,
    the learned ranker against RRF on the all-at-max union, and the worst ratio of the learned
    page's nDCG to the RRF baseline's over any window of 200 rounds after round 500 (any seed)."""
    out: dict[str, Any] = {}
    if learned not in policies:
        return out
    final = {n: p.get("ndcg@10_final") for n, p in policies.items()}
    alone = {n: v for n, v in final.items() if n.endswith("_only") and v is not None}
    baselines = dict(alone)
    if "rrf_all_max" in final:
        baselines["rrf_all_max"] = final["rrf_all_max"]
    if baselines:
        best = max(baselines, key=lambda n: baselines[n])
        out["best_baseline"] = best
        out["margin_over_best_baseline"] = round(final[learned] - baselines[best], 5)
    if "all_max" in policies:
        out["candidates_share_of_all_max"] = round(policies[learned]["mean_candidates_final"]
                                                   / max(policies["all_max"]["mean_candidates"], 1e-9), 4)
    if "all_max" in final and "rrf_all_max" in final:
        out["ranker_minus_rrf_on_all_max"] = round(final["all_max"] - final["rrf_all_max"], 5)
    worst = []
    for results in runs.values():
        by = {r.policy: r for r in results}
        if learned in by and "rrf_all_max" in by and len(by[learned].ndcg) > SAFETY_FROM:
            ours, base = _rolling(by[learned].ndcg, SAFETY_WINDOW), _rolling(by["rrf_all_max"].ndcg, SAFETY_WINDOW)
            start = SAFETY_FROM - SAFETY_WINDOW + 1 if SAFETY_FROM >= SAFETY_WINDOW else 0
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = ours[start:] / base[start:]
            worst.append(float(np.nanmin(ratio)) if ratio.size else float("nan"))
    if worst:
        out["worst_window_ratio_vs_rrf"] = round(min(worst), 4)
        out["worst_window_ratio_by_seed"] = [round(w, 4) for w in worst]
    return out


def format_table(report: dict[str, Any]) -> str:
    """A fixed-width table of the report's per-policy summaries (means over seeds, with the
    standard deviation of the final-window nDCG when there are several)."""
    several = len(report.get("seeds", [0])) > 1
    head = (f"{'policy':<16} {'nDCG@10':>8} {'final':>7}{' ±sd':>6} {'cand.recall':>11} {'cands':>7} "
            f"{'clicks/q':>9} {'p50 ms':>7} {'p99 ms':>7}")
    lines = [head, "-" * len(head)]
    for name, s in report["policies"].items():
        sd = f"{s.get('ndcg@10_final_sd', 0.0):>6.3f}" if several else f"{'':>6}"
        lines.append(
            f"{name:<16} {s['ndcg@10']:>8.3f} {s.get('ndcg@10_final', s['ndcg@10']):>7.3f}{sd} "
            f"{s['candidate_recall']:>11.3f} {s['mean_candidates']:>7.1f} "
            f"{s['clicks_per_query']:>9.3f} {s['latency_p50_ms']:>7.2f} {s['latency_p99_ms']:>7.2f}"
        )
    checks = report.get("checks")
    if checks:
        lines.append("checks: " + ", ".join(f"{k}={v}" for k, v in checks.items() if not k.endswith("by_seed")))
    hind = report.get("hindsight")
    if hind:
        plan = " ".join(f"{k}={v}" for k, v in hind["best_fixed_plan"].items() if v)
        lines.append(f"regret vs the best fixed plan in hindsight ({plan}), first/second-half slope:")
        for name, r in hind["regret"].items():
            g = r["vs_best_fixed"]
            lines.append(f"  {name:<16} {g['total']:>8.1f}   {g['slope_first_half']:+.4f} / {g['slope_second_half']:+.4f}")
    return "\n".join(lines)
