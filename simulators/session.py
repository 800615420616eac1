"""Online comparisons of policies: the same seeded query stream through one fresh engine per
policy (stateless indexes are fitted once and shared), summarized into one report."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ltrr import registry
from ltrr.catalog import Catalog
from ltrr.config import EngineConfig
from ltrr.engine import Engine
from simulators.environment import SessionResult, run_session
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


def make_click_model(name: str, preset: str):
    return registry.get("click_model", name)(preset=preset)


def compare_policies(config: EngineConfig, catalog: Catalog, stream: Sequence[SimQuery],
                     click_model_name: str = "pbm", preset: str = "navigational",
                     specs: Sequence[PolicySpec] | None = None, seed: int = 0,
                     progress: bool = True) -> tuple[list[SessionResult], dict[str, Any]]:
    """Run every policy of ``specs`` online on ``stream``; return traces and the report dict."""
    specs = list(specs or baseline_specs(config))
    shared: dict[str, Any] = {}
    results: list[SessionResult] = []
    with tempfile.TemporaryDirectory(prefix="ltrr-templates-") as tmp:
        templates: dict[str, tuple[type, Path]] = {}
        for spec in specs:
            cfg = config.with_policy(spec.type, spec.params)
            # stateless indexes are shared; stateful ones start each engine from a saved copy of
            # the first fit (loading is far cheaper than fitting, e.g. an XR-Linear tree)
            fresh = {name: klass.load(path) for name, (klass, path) in templates.items()}
            engine = Engine.from_config(cfg, catalog=catalog, prebuilt={**shared, **fresh})
            for name, strat in engine.strategies.items():
                if not getattr(strat, "stateful", False):
                    shared.setdefault(name, strat)
                elif name not in templates:
                    strat.save(Path(tmp) / name)
                    templates[name] = (type(strat), Path(tmp) / name)
            click_model = make_click_model(click_model_name, preset)
            res = run_session(engine, stream, click_model, seed=seed, policy_name=spec.label,
                              progress=progress)
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
    return results, report


def format_table(report: dict[str, Any]) -> str:
    """A fixed-width table of the report's per-policy summaries."""
    head = f"{'policy':<16} {'nDCG@10':>8} {'cand.recall':>11} {'cands':>7} {'clicks/q':>9} {'p50 ms':>7} {'p99 ms':>7}"
    lines = [head, "-" * len(head)]
    for name, s in report["policies"].items():
        lines.append(
            f"{name:<16} {s['ndcg@10']:>8.3f} {s['candidate_recall']:>11.3f} {s['mean_candidates']:>7.1f} "
            f"{s['clicks_per_query']:>9.3f} {s['latency_p50_ms']:>7.2f} {s['latency_p99_ms']:>7.2f}"
        )
    return "\n".join(lines)
