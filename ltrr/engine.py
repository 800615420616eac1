"""The Engine: the learning-to-rank-and-retrieve loop, and nothing else.

``search``: context features -> policy plan -> strategies retrieve -> union with provenance ->
ranker features and scores -> page -> decision event logged.

What the engine delegates: building its components from a config (:mod:`ltrr.builder`), learning
from feedback and retraining (:class:`ltrr.learner.Learner`, one path for live feedback, the
journal and replayed logs), the reward (:mod:`ltrr.reward`), saving, loading and state snapshots
(:mod:`ltrr.store.engine_dir`). The CLI, replay and the HTTP service are thin layers over it.
Components are reached only through their contracts (:mod:`ltrr.contracts`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from ltrr.catalog import Catalog
from ltrr.config import EngineConfig
from ltrr.context import ContextFeaturizer
from ltrr.contracts.policy import PageFusion, Policy
from ltrr.contracts.ranker import Ranker
from ltrr.contracts.strategy import CandidateGenerator, QueryStatistics
from ltrr.errors import DataError
from ltrr.event_ids import EventIds
from ltrr.features import FeatureBuilder
from ltrr.incumbent import (
    RANKING_BASELINE,
    RANKING_INTERLEAVED,
    RANKING_LEARNED,
    Incumbent,
    middle_depth,
)
from ltrr.latency import LatencyTracker
from ltrr.learner import FeedbackResult, Learner
from ltrr.ranking.fusion import FusionSpec, fuse
from ltrr.ranking.interleaving import team_draft
from ltrr.store.log_contract import EventStore
from ltrr.success import StrategySuccess
from ltrr.types import Candidates, Decision, Feedback, Plan, QueryBatch

__all__ = ["Engine", "FeedbackResult", "decision_to_json"]


class Engine:
    """One engine instance: catalog, strategies, policy, ranker and event log.

    ``strategies`` and ``ranker`` are replaced whole when a retrained model is swapped in (see
    :class:`~ltrr.learner.Learner`); a request reads each reference once, so it is answered by
    one consistent set of models.
    """

    def __init__(self, config: EngineConfig, catalog: Catalog,
                 strategies: Mapping[str, CandidateGenerator], policy: Policy,
                 ranker: Ranker, features: FeatureBuilder,
                 context: ContextFeaturizer, events: EventStore, *, event_ids: EventIds | None = None):
        self.config = config
        self.catalog = catalog
        self.strategies: Mapping[str, CandidateGenerator] = dict(strategies)
        self.policy = policy
        self.ranker = ranker
        self.features = features
        self.context = context
        self.events = events
        self.lock = threading.RLock()
        seeds = np.random.SeedSequence(int(config.seed)).spawn(3)
        self.policy_rng = np.random.default_rng(seeds[0])
        self.incumbent_rng = np.random.default_rng(seeds[2])  # interleaving draws
        self.incumbent = Incumbent(config.incumbent)
        self.event_ids = event_ids if event_ids is not None else EventIds.for_config(config, events)
        self.success = StrategySuccess([s.name for s in config.strategies], config.policy.success_half_life)
        menu = policy.menu
        self.latency = LatencyTracker(menu.strategies, menu.options,
                                      [self.strategies[n].cost_ms for n in menu.strategies],
                                      config.policy.latency_half_life)
        self.learner = Learner(self)
        self.n_searches = 0
        # the log carries the names of the features it stores (read by `ltrr train-ranker --log`)
        events.put_meta(f"feature_schema:{features.schema.fingerprint}", _schema_json(features))

    # ------------------------------------------------------------------ building and persistence
    @classmethod
    def from_config(cls, config: EngineConfig, *, catalog: Catalog | None = None,
                    prebuilt: Mapping[str, CandidateGenerator] | None = None) -> Engine:
        """Build and fit every component named in ``config`` (see :func:`ltrr.builder.build_engine`)."""
        from ltrr.builder import build_engine

        return build_engine(cls, config, catalog=catalog, prebuilt=prebuilt)

    def save(self, directory: str | os.PathLike) -> None:
        """Save as a directory of open formats with a JSON manifest (atomic)."""
        from ltrr.store.engine_dir import save_engine

        save_engine(self, directory)

    @classmethod
    def load(cls, directory: str | os.PathLike, *, events_path: str | None = None,
             verify: str = "quick", store: dict[str, Any] | None = None) -> Engine:
        """Load an engine directory written by :meth:`save` (``verify``: ``"quick"`` checks every
        file's size and fingerprint, ``"full"`` also its SHA-256; see ltrr.store.engine_dir;
        ``store``: overrides of its ``[store]`` section, e.g. a serving replica's PostgreSQL backend)."""
        from ltrr.store.engine_dir import load_engine

        if verify not in ("quick", "full", "none"):
            raise ValueError(f"verify must be 'quick', 'full' or 'none'; got {verify!r}")
        return load_engine(cls, directory, events_path=events_path, verify=verify,  # type: ignore[arg-type]
                           store=store)

    def replace_strategy(self, name: str, strategy: CandidateGenerator) -> None:
        """Swap in a new instance of strategy ``name`` (callers hold :attr:`lock`): the mapping
        is replaced whole, so requests that already read it keep a consistent one."""
        if name not in self.strategies:
            raise KeyError(name)
        self.strategies = {**self.strategies, name: strategy}

    # ------------------------------------------------------------------ the loop
    def context_of(self, query: str, ts: float) -> tuple[QueryBatch, np.ndarray]:
        """The request's query batch and its context features ``x`` (query text, time, and the
        signals strategies report about the query, e.g. the click memory's hit count)."""
        batch = QueryBatch((query,))
        signals: dict[str, np.ndarray] = {}
        needed = self.context.signals_needed
        for strat in self.strategies.values():
            # only strategies whose signals a context feature reads; the first to report a
            # signal provides it (e.g. the first BM25 strategy's bm25_top_frac)
            if isinstance(strat, QueryStatistics) and needed.intersection(strat.query_stat_names):
                for name, values in strat.query_stats(batch.texts).items():
                    signals.setdefault(name, values)
        signals.update(self.success.signals(len(batch.texts)))
        return batch, self.context.transform(batch.texts, [ts], signals)[0]

    def search(self, query: str, context: Mapping[str, Any] | None = None, *, k: int | None = None,
               ts: float | None = None) -> Decision:
        """Answer one request and log the decision."""
        if not isinstance(query, str):
            raise DataError(f"query must be a string, got {type(query).__name__}")
        context = dict(context or {})
        ts = time.time() if ts is None else float(ts)
        k = self.config.page_size if k is None else int(k)
        if k < 1:
            raise DataError(f"The 'k' parameter of search must be an int in [1, inf). Got {k} instead.")
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        batch, x = self.context_of(query, ts)
        t1 = time.perf_counter()
        timings["features"] = (t1 - t0) * 1e3
        with self.lock:
            policy, ranker, strategies = self.policy, self.ranker, self.strategies
            plan, plan_source = self._choose_plan(policy, x, ts, k)
            fusion = policy.fusion_spec() if isinstance(policy, PageFusion) else None
            ranking = (RANKING_LEARNED if fusion is not None
                       else self.incumbent.ranker.mode(ranker.is_fitted, self.incumbent_rng))
            self.incumbent.rounds += 1
            event_id = self.event_ids.next()
        t2 = time.perf_counter()
        timings["policy"] = (t2 - t1) * 1e3
        cands = self._union(batch, plan.strategies, plan.depths, strategies, timings)
        strategy_ms = self._strategy_cost(plan, timings)
        t4 = time.perf_counter()
        feats = self.features.build(batch, cands, strategies)
        teams = None
        if fusion is not None:
            scores = fuse(cands, fusion)
        elif ranking == RANKING_BASELINE:
            scores = fuse(cands, self._baseline_fusion())
        else:
            scores = ranker.score(feats)
        order = np.lexsort((np.arange(len(cands)), -scores))[:k]
        if ranking == RANKING_INTERLEAVED:
            base = fuse(cands, self._baseline_fusion())
            base_order = np.lexsort((np.arange(len(cands)), -base))[:k]
            where = {int(item): i for i, item in enumerate(cands.items)}
            items, teams = team_draft(cands.items[base_order], cands.items[order], k, self.incumbent_rng)
            order = np.array([where[int(i)] for i in items], dtype=np.int64)
        page = cands.items[order]
        t5 = time.perf_counter()
        timings["ranker"] = (t5 - t4) * 1e3
        versions = {"policy": f"{policy.type_name}@{policy.n_updates_}",
                    "ranker": (f"fusion:{fusion.method}" if fusion is not None
                               else "fusion:rrf" if ranking == RANKING_BASELINE else ranker.version_),
                    "features": self.features.schema.fingerprint}
        if fusion is None and self.config.incumbent.gate_ranking:
            versions["ranking"] = ranking
        if plan_source is not None:
            versions["plan"] = plan_source
        decision = Decision(
            event_id=event_id, ts=ts, query=query, context=context, x=x, plan=plan,
            candidates=cands, features=feats, page=page, page_scores=scores[order].astype(np.float32),
            page_ids=tuple(self.catalog.ids[i] for i in page), model_versions=versions,
            timings_ms=timings, teams=teams, strategy_ms=strategy_ms,
        )
        self.events.append(decision)
        timings["logging"] = (time.perf_counter() - t5) * 1e3
        self.n_searches += 1
        return decision

    def _choose_plan(self, policy: Policy, x: np.ndarray, ts: float, k: int) -> tuple[Plan, str | None]:
        """The learned policy's plan (among the plans within the p99 latency budget), or the
        baseline plan when the incumbent's conservative condition does not hold (caller holds
        the lock); the source is None when ungated."""
        allowed = self.plans_within_budget(policy) if policy.adaptive else None
        if not (self.config.incumbent.gate_plans and policy.adaptive):
            return policy.select(x, self.policy_rng, allowed), None
        self.incumbent.plans.served()
        if self.incumbent.plans_allowed(ts) and not self.incumbent.monitors_baseline_plan():
            return policy.select(x, self.policy_rng, allowed), "learned"
        return self.baseline_plan(policy, k), "baseline"

    def plans_within_budget(self, policy: Policy) -> np.ndarray | None:
        """Menu plans whose estimated p99 latency fits ``policy.p99_budget_ms`` (the fastest
        plan stays allowed when none fits); None without a budget."""
        budget = self.config.policy.p99_budget_ms
        if budget is None:
            return None
        _mean, p99 = self.latency.plan_ms(policy.menu.plans)
        allowed = p99 <= budget
        if not allowed.any():
            allowed[int(np.argmin(p99))] = True
        return allowed

    def _strategy_cost(self, plan: Plan, timings: dict[str, float]) -> np.ndarray:
        """Each strategy's cost in ms for this search, and the measurements fed to the tracker:
        measured (this call's time) or declared (the strategy's hint), per
        ``policy.latency_source``."""
        ms = np.zeros(len(plan.depths))
        declared = self.config.policy.latency_source == "declared"
        with self.lock:
            for s, (name, depth) in enumerate(zip(plan.strategies, plan.depths, strict=True)):
                if depth <= 0:
                    continue
                measured = timings.get(f"strategy:{name}", 0.0)
                self.latency.observe(s, int(depth), measured)
                ms[s] = self.strategies[name].cost_ms(int(depth)) if declared else measured
        return ms

    def baseline_plan(self, policy: Policy, k: int = 0) -> Plan:
        """The incumbent's plan (``incumbent.baseline_plan``; default every strategy at the
        middle of its menu's positive depths, or deep enough to fill a page of ``k`` when the
        menu allows: :func:`middle_depth`), chosen with probability 1."""
        menu = policy.menu
        chosen = self.config.incumbent.baseline_plan
        depths = tuple(int(chosen.get(s, 0)) if chosen else middle_depth(o, at_least=k)
                       for s, o in zip(menu.strategies, menu.options, strict=True))
        return Plan(menu.strategies, depths, 1.0, action=menu.action_of(depths), policy="incumbent")

    def _baseline_fusion(self) -> FusionSpec:
        return FusionSpec("rrf", self.config.incumbent.rrf_k)

    def retrieve_lists(self, batch: QueryBatch, strategies: tuple[str, ...], depths: tuple[int, ...],
                       timings: dict[str, float] | None = None,
                       instances: Mapping[str, CandidateGenerator] | None = None
                       ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each strategy's ``(ids, scores)`` for the batch's one query at its depth (empty at
        depth 0 or for a blank query); ``timings`` (ms) gets ``strategy:<name>`` when given."""
        live = self.strategies if instances is None else instances
        rows = []
        blank = not batch.texts[0].strip()
        for name, depth in zip(strategies, depths, strict=True):
            t0 = time.perf_counter()
            if depth > 0 and not blank:
                rows.append(live[name].retrieve(batch, int(depth)).row(0))
            else:
                rows.append((np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)))
            if timings is not None:
                timings[f"strategy:{name}"] = (time.perf_counter() - t0) * 1e3
        return rows

    def retrieve_union(self, batch: QueryBatch, strategies: tuple[str, ...], depths: tuple[int, ...],
                       timings: dict[str, float] | None = None) -> Candidates:
        """Each strategy's candidates at its depth, unioned with provenance (``timings`` also
        gets ``union``). Reads the strategies only, so it may be called outside a logged search."""
        return self._union(batch, strategies, depths, self.strategies, timings)

    def _union(self, batch: QueryBatch, strategies: tuple[str, ...], depths: tuple[int, ...],
               instances: Mapping[str, CandidateGenerator], timings: dict[str, float] | None) -> Candidates:
        rows = self.retrieve_lists(batch, strategies, depths, timings, instances)
        t0 = time.perf_counter()
        cands = Candidates.union(strategies, rows, depths)
        if timings is not None:
            timings["union"] = (time.perf_counter() - t0) * 1e3
        return cands

    def build_features(self, batch: QueryBatch, cands: Candidates) -> np.ndarray:
        """Ranker features of a candidate union with the engine's current strategies."""
        return self.features.build(batch, cands, self.strategies)

    # ------------------------------------------------------------------ learning
    def feedback(self, feedback: Feedback) -> FeedbackResult:
        """Store and learn from feedback for one event (see :meth:`ltrr.learner.Learner.feedback`)."""
        return self.learner.feedback(feedback)

    def explain(self, decision: Decision, top: int | None = None) -> list[dict[str, Any]]:
        """Per result of ``decision``: provenance and per-feature contributions to its score
        (LightGBM ``pred_contrib``; the RRF prior's per-strategy terms while untrained)."""
        from ltrr.ranking.explain import explain_decision

        return explain_decision(decision, self.ranker, self.catalog.titles, top=top)

    # ------------------------------------------------------------------ serving
    def reseed(self, *keys: int) -> None:
        """Re-derive the policy's random stream from ``(config.seed, *keys)`` (a serving process
        passes keys unique to it, so two processes do not explore in lockstep)."""
        seeds = np.random.SeedSequence([int(self.config.seed), *(int(k) for k in keys)]).spawn(3)
        with self.lock:
            self.policy_rng = np.random.default_rng(seeds[0])
            self.incumbent_rng = np.random.default_rng(seeds[2])

    def close(self) -> None:
        """Close the event log (strategies may be shared with other engines: not closed here)."""
        self.events.close()


def _schema_json(features: FeatureBuilder) -> str:
    import json

    return json.dumps(features.schema.to_dict())


def decision_to_json(d: Decision, catalog: Catalog) -> dict[str, Any]:
    """A JSON-ready view of a decision (used by the CLI and the service)."""
    c = d.candidates
    where = {int(v): i for i, v in enumerate(c.items)}
    results = []
    for row, score in zip(d.page, d.page_scores, strict=True):
        i = where[int(row)]
        prov = {s: {"rank": int(c.ranks[i, j]), "score": float(c.scores[i, j])}
                for j, s in enumerate(c.strategies) if c.found[i, j]}
        results.append({"id": catalog.ids[row], "title": catalog.titles[row], "score": float(score),
                        "provenance": prov})
    return {"event_id": d.event_id, "query": d.query, "results": results, "plan": d.plan.to_dict(),
            "model_versions": dict(d.model_versions), "n_candidates": len(c),
            "timings_ms": {k: round(v, 3) for k, v in d.timings_ms.items()}}
