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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class PolicySpec:
    """A policy to compare: display name, registry type and params."""

    label: str
    type: str
    params: dict[str, Any]


def baseline_specs(config: EngineConfig) -> list[PolicySpec]:
    """The learned policy of ``config``, each strategy alone at its largest depth, all
    strategies at their largest depth (reranked by the learned ranker), and the same union ordered
    by reciprocal rank fusion (the unsupervised hybrid baseline)."""
    specs = [PolicySpec(config.policy.type, config.policy.type, dict(config.policy.params))]
    for s in config.strategies:
        specs.append(PolicySpec(f"{s.name}_only", "fixed", {"depths": {s.name: max(s.depths)}}))
    specs.append(PolicySpec("all_max", "fixed", {}))
    if len(config.strategies) > 1:
        specs.append(PolicySpec("rrf_all_max", "rrf", {}))
    return specs


def fresh_copies(templates: dict[str, tuple[type[CandidateGenerator], Path]]) -> dict[str, CandidateGenerator]:
    """An independent copy of every learning strategy, loaded from its saved first fit (loading
    is far cheaper than fitting, e.g. an XR-Linear tree)."""
    return {name: klass.load(path) for name, (klass, path) in templates.items()}


def make_click_model(name: str, preset: str):
    return registry.get("click_model", name)(preset=preset)


def compare_policies(config: EngineConfig, catalog: Catalog, stream: Sequence[SimQuery],
                     click_model_name: str = "pbm", preset: str = "navigational",
                     specs: Sequence[PolicySpec] | None = None, seed: int = 0,
                     progress: bool = True) -> tuple[list[SessionResult], dict[str, Any]]:
    """Run every policy of ``specs`` online on ``stream``; return traces and the report dict."""
    specs = list(specs or baseline_specs(config))
    config = config.model_copy(update={"store": config.store.model_copy(update={"event_ids": "seeded"})})
    shared: dict[str, CandidateGenerator] = {}
    results: list[SessionResult] = []
    table: HindsightTable | None = None
    recorder: HindsightRecorder | None = None
    with tempfile.TemporaryDirectory(prefix="ltrr-templates-") as tmp:
        templates: dict[str, tuple[type[CandidateGenerator], Path]] = {}
        for spec in specs:
            cfg = config.with_policy(spec.type, spec.params)
            engine = Engine.from_config(cfg, catalog=catalog, prebuilt={**shared, **fresh_copies(templates)})
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
                                             k=config.page_size)
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
        "notes": ("Relevance is derived from catalog fields by the query generator, not human "
                  "judgments; all numbers are bandit feedback measured online against that truth."),
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


def format_table(report: dict[str, Any]) -> str:
    """A fixed-width table of the report's per-policy summaries."""
    head = f"{'policy':<16} {'nDCG@10':>8} {'cand.recall':>11} {'cands':>7} {'clicks/q':>9} {'p50 ms':>7} {'p99 ms':>7}"
    lines = [head, "-" * len(head)]
    for name, s in report["policies"].items():
        lines.append(
            f"{name:<16} {s['ndcg@10']:>8.3f} {s['candidate_recall']:>11.3f} {s['mean_candidates']:>7.1f} "
            f"{s['clicks_per_query']:>9.3f} {s['latency_p50_ms']:>7.2f} {s['latency_p99_ms']:>7.2f}"
        )
    hind = report.get("hindsight")
    if hind:
        plan = " ".join(f"{k}={v}" for k, v in hind["best_fixed_plan"].items() if v)
        lines.append(f"regret vs the best fixed plan in hindsight ({plan}), first/second-half slope:")
        for name, r in hind["regret"].items():
            g = r["vs_best_fixed"]
            lines.append(f"  {name:<16} {g['total']:>8.1f}   {g['slope_first_half']:+.4f} / {g['slope_second_half']:+.4f}")
    return "\n".join(lines)
