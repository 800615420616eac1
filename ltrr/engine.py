"""The Engine: the learning-to-rank-and-retrieve loop, and nothing else.

``search``: context features -> policy plan -> strategies retrieve -> union with provenance ->
ranker features and scores -> page -> decision event logged.
``feedback``: stored idempotently -> policy reward (once per event; semi-bandit per-strategy
credit) -> strategies observe (the click memory learns) -> ranker retrains every N events.
The CLI, replay and the HTTP service are thin layers over this class.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ltrr import registry
from ltrr.catalog import Catalog
from ltrr.config import EngineConfig, parse_config
from ltrr.context import ContextFeaturizer
from ltrr.errors import DataError, FeedbackExpiredError, PersistenceError, UnknownEventError
from ltrr.features import FeatureBuilder
from ltrr.ranking.fusion import FusionSpec, fuse
from ltrr.ranking.lambdamart import LambdaMARTRanker
from ltrr.store.events import EventLog, JournalEntry, LoggedEvent
from ltrr.store.persist import atomic_directory, read_manifest, write_manifest
from ltrr.success import StrategySuccess
from ltrr.types import Candidates, Decision, Feedback, QueryBatch
from policies.base import PlanMenu, Policy
from strategies.base import CandidateGenerator

if TYPE_CHECKING:
    from ltrr.offline.logs import LogRecord

ENGINE_FORMAT_VERSION = 1


@dataclass(frozen=True)
class FeedbackResult:
    """What one feedback call changed."""

    event_id: str
    new_events: int
    duplicate_events: int
    policy_updated: bool
    reward: float | None
    ranker_retrained: bool


@dataclass(frozen=True)
class RecordedFeedback:
    """Feedback stored durably by :meth:`Engine.record_feedback` (not yet learned from).

    ``entry`` is None when the call changed nothing (all duplicates, event already credited).
    """

    entry: JournalEntry | None
    duplicate_events: int
    decision_ts: float


@dataclass(frozen=True)
class LogStep:
    """What learning from one logged search did (:meth:`Engine.learn_from_log`).

    ``plan_rewards[a]`` and ``plan_recall[a]`` are full-information numbers: the reward menu plan
    ``a`` would have earned and the fraction of clicked items its candidates contain (NaN without
    clicks), known because strategies are deterministic. ``chosen`` is the plan the policy picked
    for the query before learning from it. ``mode`` says how the policy learned:
    ``"full-information"`` (foreign log: every plan's reward) or ``"bandit-feedback"`` (ltrr log:
    only the logged plan's reward, with ``ips_weight`` = the policy's probability of the logged
    plan over its logged propensity).
    """

    mode: str
    x: np.ndarray
    chosen: int
    plan_rewards: np.ndarray
    plan_recall: np.ndarray
    n_clicks: int
    logged_action: int = -1
    logged_reward: float | None = None
    ips_weight: float | None = None
    unknown_items: int = 0
    ranker_retrained: bool = False


class Engine:
    """One engine instance: catalog, strategies, policy, ranker and event log."""

    def __init__(self, config: EngineConfig, catalog: Catalog,
                 strategies: Mapping[str, CandidateGenerator], policy: Policy,
                 ranker: LambdaMARTRanker, features: FeatureBuilder,
                 context: ContextFeaturizer, events: EventLog):
        self.config = config
        self.catalog = catalog
        self.strategies = dict(strategies)
        self.policy = policy
        self.ranker = ranker
        self.features = features
        self.context = context
        self.events = events
        seeds = np.random.SeedSequence(config.seed).spawn(2)
        self._rng = np.random.default_rng(seeds[0])
        self._id_rng = np.random.default_rng(seeds[1])
        self._lock = threading.RLock()
        self._feedback_since_train = 0
        self._retraining: set[str] = set()   # strategies whose new model is being built
        self.success = StrategySuccess([s.name for s in config.strategies], config.policy.success_half_life)
        self.n_searches = 0
        # the log carries the names of the features it stores (read by `ltrr train-ranker --log`)
        events.put_meta(f"feature_schema:{features.schema.fingerprint}", json.dumps(features.schema.to_dict()))

    # ------------------------------------------------------------------ building
    @classmethod
    def from_config(cls, config: EngineConfig, *, catalog: Catalog | None = None,
                    prebuilt: Mapping[str, CandidateGenerator] | None = None) -> Engine:
        """Build and fit every component named in ``config``.

        ``prebuilt`` supplies already-fitted stateless strategies by instance name (e.g. one BM25
        index shared by several simulated engines); stateful ones should not be shared.
        """
        catalog = catalog or Catalog.from_jsonl(config.catalog.path, limit=config.catalog.limit)
        prebuilt = dict(prebuilt or {})
        strategies: dict[str, CandidateGenerator] = {}
        for i, sc in enumerate(config.strategies):
            if sc.name in prebuilt:
                strategies[sc.name] = prebuilt[sc.name]
                continue
            klass = registry.get("strategy", sc.kind)
            params = dict(sc.params)
            if "text_fields" in getattr(klass.Params, "model_fields", {}) and "text_fields" not in params:
                params["text_fields"] = list(config.catalog.text_fields)
            from ltrr.params import validate_params

            p = validate_params(klass.Params, params, f"strategies[{i}] ({sc.name}).params")
            strategies[sc.name] = klass(p, name=sc.name).fit(catalog)
        policy = cls._build_policy(config)
        features = FeatureBuilder(catalog, strategies, config.catalog.text_fields)
        ranker = registry.get("ranker", config.ranker.type)(features.schema, dict(config.ranker.params))
        events = EventLog(config.store.events_path, config.store.synchronous)
        return cls(config, catalog, strategies, policy, ranker, features,
                   ContextFeaturizer(config.context_features, [s.name for s in config.strategies]), events)

    @staticmethod
    def _build_policy(config: EngineConfig) -> Policy:
        menu = PlanMenu.build({s.name: s.depths for s in config.strategies}, config.policy.budget,
                              config.policy.plans)
        ctx = ContextFeaturizer(config.context_features, [s.name for s in config.strategies])
        klass = registry.get("policy", config.policy.type)
        from ltrr.params import validate_params

        params = validate_params(klass.Params, config.policy.params, f"policy ({config.policy.type}).params")
        return klass(menu, len(ctx.names), params, ctx.names)

    def _context_of(self, query: str, ts: float) -> tuple[QueryBatch, np.ndarray]:
        """The request's query batch and its context features ``x`` (query text, time, and the
        signals strategies report about the query, e.g. the click memory's hit count)."""
        batch = QueryBatch((query,))
        signals: dict[str, np.ndarray] = {}
        for strat in self.strategies.values():
            stats = getattr(strat, "query_stats", None)
            if stats is not None:
                signals.update(stats(batch.texts))
        signals.update(self.success.signals(len(batch.texts)))
        return batch, self.context.transform(batch.texts, [ts], signals)[0]

    # ------------------------------------------------------------------ the loop
    def search(self, query: str, context: Mapping[str, Any] | None = None, *, k: int | None = None,
               ts: float | None = None) -> Decision:
        """Answer one request and log the decision."""
        if not isinstance(query, str):
            raise DataError(f"query must be a string, got {type(query).__name__}")
        context = dict(context or {})
        ts = time.time() if ts is None else float(ts)
        k = self.config.page_size if k is None else int(k)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        batch, x = self._context_of(query, ts)
        t1 = time.perf_counter()
        timings["features"] = (t1 - t0) * 1e3
        with self._lock:
            plan = self.policy.select(x, self._rng)
            event_id = str(uuid.UUID(int=int(self._id_rng.integers(0, 2**63)) << 64
                                     | int(self._id_rng.integers(0, 2**63)), version=4))
        t2 = time.perf_counter()
        timings["policy"] = (t2 - t1) * 1e3
        cands = self.retrieve_union(batch, plan.strategies, plan.depths, timings)
        t4 = time.perf_counter()
        feats = self.features.build(batch, cands)
        fusion = getattr(self.policy, "fusion", None)
        scores = fuse(cands, FusionSpec(**fusion)) if fusion else self.ranker.score(feats)
        order = np.lexsort((np.arange(len(cands)), -scores))[:k]
        page = cands.items[order]
        t5 = time.perf_counter()
        timings["ranker"] = (t5 - t4) * 1e3
        decision = Decision(
            event_id=event_id, ts=ts, query=query, context=context, x=x, plan=plan,
            candidates=cands, features=feats, page=page, page_scores=scores[order].astype(np.float32),
            page_ids=tuple(self.catalog.ids[i] for i in page),
            model_versions={"policy": f"{self.policy.type_name}@{self.policy.n_updates_}",
                            "ranker": f"fusion:{fusion['method']}" if fusion else self.ranker.version_,
                            "features": self.features.schema.fingerprint},
            timings_ms=timings,
        )
        self.events.append(decision)
        timings["logging"] = (time.perf_counter() - t5) * 1e3
        self.n_searches += 1
        return decision

    def retrieve_union(self, batch: QueryBatch, strategies: tuple[str, ...], depths: tuple[int, ...],
                       timings: dict[str, float] | None = None) -> Candidates:
        """Each strategy's candidates at its depth (none at depth 0 or for a blank query), unioned
        with provenance; ``timings`` (ms) gets ``strategy:<name>`` and ``union`` when given.
        Reads the strategies only, so it may also be called outside a logged search."""
        rows = []
        blank = not batch.texts[0].strip()
        for name, depth in zip(strategies, depths, strict=True):
            t0 = time.perf_counter()
            if depth > 0 and not blank:
                rows.append(self.strategies[name].retrieve(batch, int(depth)).row(0))
            else:
                rows.append((np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)))
            if timings is not None:
                timings[f"strategy:{name}"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        cands = Candidates.union(strategies, rows)
        if timings is not None:
            timings["union"] = (time.perf_counter() - t0) * 1e3
        return cands

    def _validated(self, feedback: Feedback) -> tuple[LoggedEvent, float]:
        """The logged decision a feedback refers to, and the feedback time; raises (writing
        nothing) for an unknown event id or an item that was not shown."""
        logged = self.events.get(feedback.event_id)
        if logged is None:
            raise UnknownEventError(f"Unknown event id {feedback.event_id!r}: no decision with this id is in the event log")
        shown = set(logged.page_ids)
        for ev in feedback.events:
            if ev.item not in shown:
                raise DataError(f"Item {ev.item!r} was not shown in event {feedback.event_id!r}")
        return logged, time.time() if feedback.ts is None else float(feedback.ts)

    def feedback(self, feedback: Feedback) -> FeedbackResult:
        """Apply feedback for one event. Idempotent per (event, item, kind).

        An empty ``events`` tuple means "shown, nothing clicked": it still closes the event for
        the policy (reward 0 minus cost) and records the impressions in the click memory.
        """
        logged, ts = self._validated(feedback)
        new = self.events.add_feedback(feedback.event_id, feedback.events, ts)
        first = self.events.mark_credited(feedback.event_id)
        if not new and not first:
            return FeedbackResult(feedback.event_id, 0, len(feedback.events), False, None, False)
        clicked_rows = self.catalog.rows_of([ev.item for ev in new if ev.value > 0])
        reward = None
        with self._lock:
            if first:
                all_clicked = self.catalog.rows_of([i for i, _k, v in self.events.feedback_for(feedback.event_id) if v > 0])
                reward, per_strategy = self._rewards(logged.candidates, logged.plan.depths, all_clicked,
                                                     logged.page_rows)
                self.policy.update(logged.x, logged.plan, reward, per_strategy)
                self._observe_success(logged.candidates, logged.plan.depths, all_clicked)
            shown_rows = logged.page_rows if first else np.empty(0, dtype=np.int64)
            for strat in self.strategies.values():
                strat.observe(logged.query, shown_rows, clicked_rows, ts)
            self._feedback_since_train += 1
            retrained = False
            every = self.config.ranker.retrain_every
            if every and self._feedback_since_train >= every:
                retrained = self.retrain_ranker()
        self.retrain_strategies()
        return FeedbackResult(feedback.event_id, len(new), len(feedback.events) - len(new),
                              first, reward, retrained)

    def _rewards(self, cands: Candidates, depths: tuple[int, ...], clicked_rows: np.ndarray,
                 page: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """Plan reward and per-strategy (semi-bandit) rewards, each minus the cost of its depth.

        ``page`` (the rows shown, in order) is needed by ``reward.kind = "click_dcg"``.
        """
        cost = self.config.reward.cost_per_candidate
        if self.config.reward.kind == "click_dcg" and page is not None:
            k = self.config.page_size
            w_pos = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
            page = np.asarray(page, dtype=np.int64)[:k]
            w_page = np.where(np.isin(page, clicked_rows), w_pos[: page.size], 0.0)
            w_cand = (cands.items[:, None] == page[None, :]) @ w_page / w_pos.sum()  # [n_cands]
            d = np.asarray(depths, dtype=np.float64)
            per_strategy = self._strategy_gain(cands.found, w_cand) - cost * d
            reward = float(w_cand.sum()) - cost * float(d.sum())
            return float(np.clip(reward, -1.0, 1.0)), np.clip(per_strategy, -1.0, 1.0)
        in_union = np.isin(cands.items, clicked_rows)
        d = np.asarray(depths, dtype=np.float64)
        per_strategy = self._strategy_gain(cands.found[in_union], None) - cost * d
        reward = float(in_union.any()) - cost * float(d.sum())
        return float(np.clip(reward, -1.0, 1.0)), np.clip(per_strategy, -1.0, 1.0)

    def _strategy_gain(self, found: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        """Each strategy's gain (before its cost) from the clicked items it drew.

        ``found[i, s]``: strategy ``s`` drew item ``i``; ``weights[i]``: item ``i``'s share of the
        page reward (``click_dcg``), or None for ``any_click`` (the plan earns 1 if it drew any
        clicked item). ``reward.credit`` decides how overlapping strategies are paid (see
        :class:`ltrr.config.RewardConfig`).
        """
        found = np.asarray(found, dtype=bool)
        if found.shape[0] == 0:
            return np.zeros(found.shape[1])
        split = self.config.reward.credit == "split"
        if weights is None:
            if not split:
                return found.any(axis=0).astype(np.float64)
            covered = found.any(axis=1)
            weights = covered / max(int(covered.sum()), 1)
        share = found.astype(np.float64)
        if split:
            share /= np.maximum(share.sum(axis=1, keepdims=True), 1.0)
        return share.T @ np.asarray(weights, dtype=np.float64)

    def _observe_success(self, cands: Candidates, depths: tuple[int, ...], clicked_rows: np.ndarray) -> None:
        """Credit each strategy that ran with whether it drew a clicked item (``success_*``);
        plans and candidates list the strategies in config order, as the tracker does."""
        in_union = np.isin(cands.items, clicked_rows)
        hit = cands.found[in_union].any(axis=0) if in_union.any() else np.zeros(len(depths), bool)
        self.success.observe(depths, hit)

    def retrain_ranker(self) -> bool:
        """Retrain the ranker from logged features of recent events with clicks."""
        from ltrr.ranking.training import fit_from_clicks, training_set

        data = training_set(self.events.training_events(self.config.ranker.train_window), self.features.schema)
        self._feedback_since_train = 0
        if data.n_queries < 10:
            return False
        self.last_training_report = fit_from_clicks(self.ranker, data)
        return True

    def retrain_strategies(self, force: bool = False) -> list[str]:
        """Rebuild strategies whose clicks observed since their last training reached their
        ``retrain_every`` (or every retrainable one with ``force``); returns the names rebuilt.

        A strategy opts in by having ``retrained(catalog)`` (a new fitted instance; ``self`` is
        left untouched) and ``n_observed``. The new model is built *outside* the lock, so searches
        keep being served by the old one meanwhile; then the reference is swapped under the lock
        (``hand_over`` first moves clicks that arrived during training into the new buffer).
        """
        done: list[str] = []
        for sc in self.config.strategies:
            with self._lock:
                old = self.strategies.get(sc.name)
                build = getattr(old, "retrained", None)
                if build is None or sc.name in self._retraining:
                    continue
                n_obs = int(getattr(old, "n_observed", 0))
                if not (n_obs > 0 and (force or (sc.retrain_every and n_obs >= sc.retrain_every))):
                    continue
                self._retraining.add(sc.name)
            try:
                new = build(self.catalog)
                with self._lock:
                    hand_over = getattr(old, "hand_over", None)
                    if hand_over is not None:
                        hand_over(new)
                    self.strategies[sc.name] = new
                done.append(sc.name)
            finally:
                with self._lock:
                    self._retraining.discard(sc.name)
        return done

    # ------------------------------------------------------------------ offline replay
    def learn_from_log(self, record: LogRecord, *, train_ranker: bool = True) -> LogStep:
        """Learn from one logged search as the engine would have online (replay).

        The logged ``shown``/``clicks`` are what the user saw. Every strategy retrieves once at
        its largest menu depth, which tells, for every menu plan, whether its candidates would
        have contained the clicked items. Records with a plan over this menu and propensities
        (ltrr logs) update the policy with bandit feedback on the logged plan; foreign records
        update it with every plan's reward (full information, :func:`policies.warm_start.warm_start`).
        Then the ranker gets a training event (features of the shown items, clicks as labels;
        only for records with clicks; skipped when ``train_ranker`` is False) and the strategies
        observe the impressions and clicks.
        """
        from ltrr.types import FeedbackEvent
        from policies.warm_start import warm_start

        menu = self.policy.menu
        cost = self.config.reward.cost_per_candidate
        query, ts = record.query, float(record.ts)
        batch, x = self._context_of(query, ts)
        plan = record.plan
        bandit = (plan is not None and record.x is not None and tuple(plan.strategies) == menu.strategies
                  and record.x.shape == (self.policy.n_features,))
        if bandit:
            x = np.asarray(record.x, dtype=np.float64)
        shown_all = self.catalog.rows_of(record.shown)
        clicked_all = self.catalog.rows_of(record.clicks)
        unknown = int((shown_all < 0).sum() + (clicked_all < 0).sum())
        shown_rows, clicked_rows = shown_all[shown_all >= 0], clicked_all[clicked_all >= 0]
        with self._lock:
            chosen = self.policy.select(x, self._rng)
            max_depth = menu.plans.max(axis=0)
            weights = self._click_weights(shown_all, clicked_rows)
            results, ranks, plan_rewards, plan_recall = self._plan_outcomes(batch, clicked_rows, weights)
            logged_action, logged_reward, weight = -1, None, None
            if bandit:
                depths = np.asarray(plan.depths, dtype=np.int64)
                logged_action = menu.action_of(depths)
                drew = ranks <= depths[None, :]  # [clicks, strategies]
                gain_s = self._strategy_gain(drew, weights)
                per_strategy = np.clip(gain_s - cost * depths, -1.0, 1.0)
                gain = float(clicked_rows.size > 0) if weights is None else float(weights.sum())
                logged_reward = (float(record.reward) if record.reward is not None
                                 else float(np.clip(gain - cost * depths.sum(), -1.0, 1.0)))
                p_now = self.policy.probabilities(x)
                weight = float(p_now[logged_action]) / plan.propensity if logged_action >= 0 else 0.0
                self.policy.update(x, plan, logged_reward, per_strategy)
                self.success.observe(depths, drew.any(axis=0))
            else:
                warm_start(self.policy, x[None, :], plan_rewards[None, :])
                self.success.observe(max_depth, (ranks <= max_depth[None, :]).any(axis=0))
            if train_ranker and clicked_rows.size and shown_rows.size:
                self._log_training_event(record, batch, x, plan if bandit else chosen, results, shown_rows,
                                         np.asarray(plan.depths) if bandit else max_depth)
                clicked_ids = [self.catalog.ids[r] for r in clicked_rows]
                self.events.add_feedback(f"{record.offset}:{record.event_id}",
                                         [FeedbackEvent(i) for i in clicked_ids], ts)
            for strat in self.strategies.values():
                strat.observe(query, shown_rows, clicked_rows, ts)
            self._feedback_since_train += 1
            retrained = False
            every = self.config.ranker.retrain_every
            if train_ranker and every and self._feedback_since_train >= every:
                retrained = self.retrain_ranker()
        self.retrain_strategies()
        return LogStep("bandit-feedback" if bandit else "full-information", x, int(chosen.action),
                       plan_rewards, plan_recall, int(clicked_rows.size), logged_action, logged_reward,
                       weight, unknown, retrained)

    def plan_outcomes(self, record: LogRecord) -> tuple[np.ndarray, np.ndarray]:
        """Full-information outcome of every menu plan on one logged search, learning nothing:
        ``(plan_rewards, plan_recall)`` as in :class:`LogStep` (sums of these over a log are the
        best-fixed-plan-in-hindsight statistics, computed shard-parallel)."""
        clicked = self.catalog.rows_of(record.clicks)
        clicked = clicked[clicked >= 0]
        weights = self._click_weights(self.catalog.rows_of(record.shown), clicked)
        with self._lock:
            _res, _ranks, rewards, recall = self._plan_outcomes(QueryBatch((record.query,)), clicked, weights)
        return rewards, recall

    def _click_weights(self, shown_rows: np.ndarray, clicked_rows: np.ndarray) -> np.ndarray | None:
        """Per clicked item, its share of the page reward under ``reward.kind = "click_dcg"``
        (``1 / log2(1 + position)`` over a full page's sum; 0 below the page); None for
        ``"any_click"``. Same definition as :meth:`_rewards`."""
        if self.config.reward.kind != "click_dcg":
            return None
        k = self.config.page_size
        w_pos = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
        page = np.asarray(shown_rows, dtype=np.int64)[:k]
        at = clicked_rows[:, None] == page[None, :]  # [clicks, positions]
        return (at @ w_pos[: page.size]) / w_pos.sum()

    def _plan_outcomes(self, batch: QueryBatch, clicked_rows: np.ndarray, weights: np.ndarray | None = None):
        """Every strategy retrieves once at its largest menu depth; from the ranks of the clicked
        items follow every plan's reward (any click, or the clicks' ``weights``) and recall."""
        menu = self.policy.menu
        cost = self.config.reward.cost_per_candidate
        query = batch.texts[0]
        max_depth = menu.plans.max(axis=0)
        results = []
        for s, name in enumerate(menu.strategies):
            if max_depth[s] > 0 and query.strip():
                results.append(self.strategies[name].retrieve(batch, int(max_depth[s])).row(0))
            else:
                results.append((np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)))
        # rank (1-based) of every clicked item in every strategy's list; inf = not found
        ranks = np.full((clicked_rows.size, len(results)), np.inf)
        for s, (ids, _sc) in enumerate(results):
            hit_c, hit_i = np.nonzero(clicked_rows[:, None] == ids[None, :])
            ranks[hit_c, s] = hit_i + 1
        contained = (ranks[None, :, :] <= menu.plans[:, None, :]).any(axis=2)  # [plans, clicks]
        totals = menu.plans.sum(axis=1).astype(np.float64)
        gain = contained.any(axis=1) if weights is None else contained @ weights
        plan_rewards = np.clip(gain - cost * totals, -1.0, 1.0)
        plan_recall = contained.mean(axis=1) if clicked_rows.size else np.full(menu.n_actions, np.nan)
        return results, ranks, plan_rewards, plan_recall

    def _log_training_event(self, record: LogRecord, batch: QueryBatch, x: np.ndarray, plan: Any,
                            results: list[tuple[np.ndarray, np.ndarray]], shown_rows: np.ndarray,
                            depths: np.ndarray) -> None:
        """Store the shown items as a decision with served-time features (ranker training row)."""
        n, names = shown_rows.size, self.policy.menu.strategies
        scores = np.full((n, len(names)), np.nan, dtype=np.float32)
        ranks = np.full((n, len(names)), np.nan, dtype=np.float32)
        for s, (ids, sc) in enumerate(results):
            ids, sc = ids[: int(depths[s])], sc[: int(depths[s])]
            at_c, at_i = np.nonzero(shown_rows[:, None] == ids[None, :])
            scores[at_c, s] = sc[at_i]
            ranks[at_c, s] = at_i + 1
        cands = Candidates(tuple(names), shown_rows.copy(), scores, ranks)
        feats = self.features.build(batch, cands)
        self.events.append(Decision(
            event_id=f"{record.offset}:{record.event_id}", ts=float(record.ts), query=record.query,
            context=dict(record.context), x=x, plan=plan, candidates=cands, features=feats,
            page=shown_rows, page_scores=np.zeros(n, dtype=np.float32),
            page_ids=tuple(self.catalog.ids[r] for r in shown_rows),
            model_versions={"policy": f"{self.policy.type_name}@{self.policy.n_updates_}",
                            "ranker": self.ranker.version_, "features": self.features.schema.fingerprint,
                            "source": "replay"}))

    def replay_state(self) -> dict[str, Any]:
        """Loop state that :meth:`save` does not hold (random streams, retrain counter), as JSON,
        so a replay checkpoint resumes exactly."""
        return {"rng": self._rng.bit_generator.state, "id_rng": self._id_rng.bit_generator.state,
                "feedback_since_train": self._feedback_since_train, "n_searches": self.n_searches}

    def restore_replay_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`replay_state` returned."""
        self._rng.bit_generator.state = state["rng"]
        self._id_rng.bit_generator.state = state["id_rng"]
        self._feedback_since_train = int(state["feedback_since_train"])
        self.n_searches = int(state["n_searches"])

    def explain(self, decision: Decision, top: int | None = None) -> list[dict[str, Any]]:
        """Per result of ``decision``: provenance and per-feature contributions to its score
        (LightGBM ``pred_contrib``; the RRF prior's per-strategy terms while untrained)."""
        from ltrr.ranking.explain import explain_decision

        return explain_decision(decision, self.ranker, self.catalog.titles, top=top)

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike) -> None:
        """Save as a directory of open formats with a JSON manifest (atomic)."""
        with self._lock, atomic_directory(directory) as tmp:
            shutil.copyfile(self.config.catalog.path, tmp / "catalog.jsonl")
            for name, strat in self.strategies.items():
                strat.save(tmp / "strategies" / name)
            self.policy.save(tmp / "policy")
            self.ranker.save(tmp / "ranker")
            config = self.config.model_dump(mode="json")
            config["catalog"]["path"] = "catalog.jsonl"
            config["store"]["events_path"] = ""
            write_manifest(tmp, "engine", ENGINE_FORMAT_VERSION, {}, config=config,
                           feature_schema=self.features.schema.to_dict(),
                           context_features=list(self.context.names),
                           strategy_success=self.success.to_dict(),
                           checksums=_checksums(tmp))

    @classmethod
    def load(cls, directory: str | os.PathLike, *, events_path: str | None = None) -> Engine:
        directory = Path(directory)
        manifest = read_manifest(directory, "engine", (ENGINE_FORMAT_VERSION,))
        for rel, digest in manifest.get("checksums", {}).items():
            f = directory / rel
            if not f.exists() or _sha256(f) != digest:
                raise PersistenceError(f"{directory}: {rel} is missing or does not match its checksum")
        config = parse_config(manifest["config"], f"{directory}/manifest.json", directory)
        if events_path is not None:
            config = config.model_copy(update={"store": config.store.model_copy(update={"events_path": events_path})})
        catalog = Catalog.from_jsonl(config.catalog.path, limit=config.catalog.limit)
        strategies = {}
        for sc in config.strategies:
            klass = registry.get("strategy", sc.kind)
            strategies[sc.name] = klass.load(directory / "strategies" / sc.name)
        policy_cls = registry.get("policy", config.policy.type)
        policy = policy_cls.load(directory / "policy")
        features = FeatureBuilder(catalog, strategies, config.catalog.text_fields)
        ranker = LambdaMARTRanker.load(directory / "ranker", expected_schema=features.schema)
        events = EventLog(config.store.events_path, config.store.synchronous)
        engine = cls(config, catalog, strategies, policy, ranker, features,
                     ContextFeaturizer(manifest.get("context_features")), events)
        if "strategy_success" in manifest:
            engine.success = StrategySuccess.from_dict(manifest["strategy_success"])
        return engine

    # ------------------------------------------------------------------ serving
    def reseed(self, *keys: int) -> None:
        """Re-derive the policy and event-id generators from ``(config.seed, *keys)``.

        A serving process calls this with keys unique to it (pid, start time): two processes,
        or one restarted, would otherwise draw the same event ids from the same seed.
        """
        seeds = np.random.SeedSequence([int(self.config.seed), *(int(k) for k in keys)]).spawn(2)
        with self._lock:
            self._rng = np.random.default_rng(seeds[0])
            self._id_rng = np.random.default_rng(seeds[1])

    def record_feedback(self, feedback: Feedback, *, max_age_s: float | None = None,
                        synchronous: str | None = None) -> RecordedFeedback:
        """Validate feedback and store it durably with a journal entry, without learning from it.

        The learning half is :meth:`apply_journal`; the service acknowledges a request once this
        returns (the rows are committed), and one learner applies the journal in order.
        """
        logged, ts = self._validated(feedback)
        if max_age_s is not None and ts - logged.ts > max_age_s:
            raise FeedbackExpiredError(
                f"Feedback for event {feedback.event_id!r} is too late: the decision was logged "
                f"{ts - logged.ts:.0f} s ago and the late-feedback window is {max_age_s:.0f} s")
        entry, dups = self.events.record_feedback(feedback.event_id, feedback.events, ts,
                                                  synchronous=synchronous)
        return RecordedFeedback(entry, dups, logged.ts)

    def apply_journal(self, entry: JournalEntry) -> FeedbackResult:
        """Learn from one journaled feedback call, as :meth:`feedback` does after storing.

        Policy reward once per event (``entry.first``, from that call's clicks), click memory,
        ranker retraining every ``ranker.retrain_every`` calls. Applying the journal in ``seq``
        order from a state snapshot reproduces the state the live service had.
        """
        logged = self.events.get(entry.event_id)
        if logged is None:
            raise UnknownEventError(f"Unknown event id {entry.event_id!r}: no decision with this id is in the event log")
        clicked_rows = self.catalog.rows_of([ev.item for ev in entry.events if ev.value > 0])
        reward = None
        with self._lock:
            if entry.first:
                reward, per_strategy = self._rewards(logged.candidates, logged.plan.depths, clicked_rows,
                                                     logged.page_rows)
                self.policy.update(logged.x, logged.plan, reward, per_strategy)
                self._observe_success(logged.candidates, logged.plan.depths, clicked_rows)
            shown_rows = logged.page_rows if entry.first else np.empty(0, dtype=np.int64)
            for strat in self.strategies.values():
                strat.observe(logged.query, shown_rows, clicked_rows, entry.ts)
            self._feedback_since_train += 1
            every = self.config.ranker.retrain_every
            due = bool(every) and self._feedback_since_train >= every
        # outside the lock: searches keep being served with the old model while LightGBM trains
        retrained = self.retrain_ranker() if due else False
        self.retrain_strategies()
        return FeedbackResult(entry.event_id, len(entry.events), 0, entry.first, reward, retrained)

    def save_state(self, directory: str | os.PathLike, **meta: Any) -> None:
        """Snapshot what online learning changes (policy, ranker, stateful strategies such as the
        click memory) atomically, with ``meta`` (e.g. the journal sequence it includes).

        Much lighter than :meth:`save`: indexes and the catalog are not copied.
        """
        with atomic_directory(directory) as tmp:
            with self._lock:  # a consistent copy under the lock; the slow file I/O outside it
                try:
                    policy = copy.deepcopy(self.policy)
                except Exception:  # a policy holding native handles: save it under the lock
                    policy = None
                    self.policy.save(tmp / "policy")
                stateful = [n for n, s in self.strategies.items() if getattr(s, "stateful", False)]
                since_train = self._feedback_since_train
                success = self.success.to_dict()
            if policy is not None:
                policy.save(tmp / "policy")
            for name in stateful:  # stateful strategies lock themselves while they copy out
                self.strategies[name].save(tmp / "strategies" / name)
            self.ranker.save(tmp / "ranker")
            write_manifest(tmp, "engine-state", 1, {}, meta=dict(meta), stateful_strategies=stateful,
                           feedback_since_train=since_train, feature_schema=self.features.schema.to_dict(),
                           strategy_success=success)

    def load_state(self, directory: str | os.PathLike) -> dict[str, Any]:
        """Restore a :meth:`save_state` snapshot into this engine; returns its ``meta``."""
        directory = Path(directory)
        manifest = read_manifest(directory, "engine-state", (1,))
        policy = type(self.policy).load(directory / "policy")
        ranker = type(self.ranker).load(directory / "ranker", expected_schema=self.features.schema)
        with self._lock:
            for name in manifest.get("stateful_strategies", []):
                strat = self.strategies.get(name)
                if strat is None:
                    raise PersistenceError(f"{directory}: state of strategy {name!r}, which this engine does not have")
                sub = directory / "strategies" / name
                # in place: the feature builder holds references to stateful strategies
                strat._load(sub, read_manifest(sub, strat.type_name, (strat.format_version,)))
            self.policy = policy
            self.ranker = ranker
            self._feedback_since_train = int(manifest.get("feedback_since_train", 0))
            if "strategy_success" in manifest:
                self.success = StrategySuccess.from_dict(manifest["strategy_success"])
        return dict(manifest.get("meta", {}))

    def close(self) -> None:
        self.events.close()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _checksums(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in sorted(files):
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if rel != "manifest.json":
                out[rel] = _sha256(p)
    return dict(sorted(out.items()))


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


