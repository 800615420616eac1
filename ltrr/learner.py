"""The learner: the one path through which feedback changes an engine.

Live feedback, feedback journal entries (the service's learner replaying what other workers
acknowledged) and records of a replayed click log all become a :class:`Lesson` and pass through
:meth:`Learner.apply`, under one locking rule:

* the policy update, the strategies' ``observe`` calls, the success tracker and the retrain
  counters change under the engine lock (short: arithmetic and SQLite writes);
* models are never trained under the lock: a new ranker (``Ranker.trained``) or strategy
  (``Retrainable.retrained``) is built aside while searches keep using the old one, then the
  engine's reference is replaced under the lock (the strategies' mapping is replaced whole).

Retraining is scheduled here and only here: ``retrain="inline"`` (the default: simulations,
replay, the Python API) retrains as soon as a schedule is due, inside the feedback call;
``retrain="deferred"`` (the HTTP service) only counts, and the service's learner thread calls
:meth:`Learner.retrain_due` so no request waits for LightGBM.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ltrr.contracts.strategy import LearnsFromFeedback, Retrainable
from ltrr.errors import DataError, FeedbackExpiredError, IncompatibleEventError, UnknownEventError
from ltrr.incumbent import TEAM_BASELINE, TEAM_LEARNED
from ltrr.offline.outcomes import plan_outcomes, plan_page_outcomes
from ltrr.ranking.plan_pages import RankerPlanPages
from ltrr.ranking.training import ClickRetrainSchedule
from ltrr.reward import RewardSpec, decision_rewards, page_gain, page_weights, ranked_page_rewards
from ltrr.store.events import JournalEntry, LoggedEvent
from ltrr.types import Candidates, Decision, Feedback, FeedbackEvent, Plan, QueryBatch

if TYPE_CHECKING:
    from ltrr.engine import Engine
    from ltrr.offline.logs import LogRecord

RetrainMode = Literal["inline", "deferred"]


def held_out(event_id: str, share: float) -> bool:
    """Whether a logged query is kept out of ranker training for the off-policy comparison: a
    stable hash of its id, so a query stays on one side across retrainings."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=4).digest(), "big") < share * 2**32


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
    """Feedback stored durably by :meth:`Learner.record` (not yet learned from).

    ``entry`` is None when the call changed nothing (all duplicates, event already credited).
    """

    entry: JournalEntry | None
    duplicate_events: int
    decision_ts: float


@dataclass(frozen=True)
class LogStep:
    """What learning from one logged search did (:meth:`Learner.learn_from_record`).

    ``plan_rewards[a]`` and ``plan_recall[a]`` are full-information numbers: the reward menu plan
    ``a`` would have earned and the fraction of clicked items its candidates contain (NaN without
    clicks), known because strategies are deterministic. ``chosen`` is the plan the policy picked
    for the query before learning from it. ``mode`` says how the policy learned:
    ``"full-information"`` (foreign log: every plan's reward) or ``"bandit-feedback"`` (ltrr log:
    the logged plan's reward, with ``ips_weight`` = the policy's probability of the logged
    plan over its logged propensity; the policy's update is the one the live engine made, the
    page-valued reward of every plan under ``policy.learning = "full_information"``).
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


@dataclass(frozen=True)
class Lesson:
    """What one piece of feedback teaches, whatever its source.

    ``shown``/``clicked`` are catalog rows for the strategies that learn from feedback (the
    impressions only once per event). The policy learns either bandit feedback (``plan`` with
    ``reward`` and ``strategy_rewards``) or full information (``plan_rewards`` of every menu
    plan); ``success_depths``/``success_hits`` feed the per-strategy success rates.
    """

    query: str
    ts: float
    shown: np.ndarray
    clicked: np.ndarray
    x: np.ndarray | None = None
    plan: Plan | None = None
    reward: float | None = None
    strategy_rewards: np.ndarray | None = None
    plan_rewards: np.ndarray | None = None
    #: which plans learn ``plan_rewards`` (None: all)
    plan_observed: np.ndarray | None = None
    success_depths: np.ndarray | None = None
    success_hits: np.ndarray | None = None
    #: the incumbent's evidence: (baseline plan served?, realized page gain) of a gated search,
    #: and (learned ranker's clicks, baseline ranking's clicks) of an interleaved page
    plan_gain: tuple[bool, float] | None = None
    interleaving: tuple[int, int] | None = None


@dataclass
class RetrainClock:
    """Feedback events and clicks learned since the ranker was last trained."""

    events: int = 0
    clicks: int = 0

    def reset(self) -> None:
        self.events = self.clicks = 0


@dataclass
class Learner:
    """Applies feedback to one engine and schedules its retraining (see the module docstring)."""

    engine: Engine
    retrain: RetrainMode = "inline"
    clock: RetrainClock = field(default_factory=RetrainClock)
    last_training_report: dict[str, Any] | None = None
    schedule: ClickRetrainSchedule | None = None
    _retraining: set[str] = field(default_factory=set)
    _train_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        rc = self.engine.config.ranker
        if self.schedule is None and rc.retrain_every:
            self.schedule = ClickRetrainSchedule(rc.retrain_first or rc.retrain_every, rc.retrain_every,
                                                 rc.retrain_growth)

    @property
    def reward(self) -> RewardSpec:
        return RewardSpec.from_config(self.engine.config)

    # ------------------------------------------------------------------ the three sources
    def feedback(self, feedback: Feedback) -> FeedbackResult:
        """Store feedback for one event (idempotent per event, item and kind) and learn from it.

        An empty ``events`` tuple means "shown, nothing clicked": it still closes the event for
        the policy (reward 0 minus cost) and records the impressions in the click memory.
        """
        rec = self.record(feedback)
        if rec.entry is None:
            return FeedbackResult(feedback.event_id, 0, len(feedback.events), False, None, False)
        res = self.apply_journal(rec.entry)
        return FeedbackResult(res.event_id, res.new_events, rec.duplicate_events, res.policy_updated,
                              res.reward, res.ranker_retrained)

    def record(self, feedback: Feedback, *, max_age_s: float | None = None,
               synchronous: str | None = None) -> RecordedFeedback:
        """Validate feedback and store it durably with a journal entry, without learning from it.

        Refused (nothing written): an unknown event id, an item that was not shown, feedback
        older than ``max_age_s`` after its decision, and an event this engine cannot learn from
        (logged by an engine with another plan menu or context size, e.g. before a reload).
        """
        engine = self.engine
        logged = engine.events.get(feedback.event_id)
        if logged is None:
            raise UnknownEventError(f"Unknown event id {feedback.event_id!r}: no decision with this id is in the event log")
        shown = set(logged.page_ids)
        for ev in feedback.events:
            if ev.item not in shown:
                raise DataError(f"Item {ev.item!r} was not shown in event {feedback.event_id!r}")
        self._check_applicable(logged)
        ts = time.time() if feedback.ts is None else float(feedback.ts)
        if max_age_s is not None and ts - logged.ts > max_age_s:
            raise FeedbackExpiredError(
                f"Feedback for event {feedback.event_id!r} is too late: the decision was logged "
                f"{ts - logged.ts:.0f} s ago and the late-feedback window is {max_age_s:.0f} s")
        entry, dups = engine.events.record_feedback(feedback.event_id, feedback.events, ts,
                                                    synchronous=synchronous)
        return RecordedFeedback(entry, dups, logged.ts)

    def _check_applicable(self, logged: LoggedEvent) -> None:
        policy = self.engine.policy
        if tuple(logged.plan.strategies) != policy.menu.strategies:
            raise IncompatibleEventError(
                f"Event {logged.event_id!r} was decided over strategies {list(logged.plan.strategies)}; "
                f"this engine's plans are over {list(policy.menu.strategies)} (the engine was replaced "
                "since): its feedback cannot be learned from")
        if np.shape(logged.x) != (policy.n_features,):
            raise IncompatibleEventError(
                f"Event {logged.event_id!r} was decided with {np.size(logged.x)} context features; "
                f"this engine's policy uses {policy.n_features} (the engine was replaced since): its "
                "feedback cannot be learned from")

    def apply_journal(self, entry: JournalEntry) -> FeedbackResult:
        """Learn from one stored feedback call: the policy's reward once per event (the call
        that closed it, with that call's clicks), click memory and other learning strategies
        from its new clicks. Applying the journal in ``seq`` order from a state snapshot
        reproduces the state the live engine had."""
        engine = self.engine
        logged = engine.events.get(entry.event_id)
        if logged is None:
            raise UnknownEventError(f"Unknown event id {entry.event_id!r}: no decision with this id is in the event log")
        self._check_applicable(logged)
        clicked = engine.catalog.rows_of([ev.item for ev in entry.events if ev.value > 0])
        reward = per_strategy = None
        hits = None
        plan_gain = interleaving = None
        if entry.first:
            reward, per_strategy, hits = self.credit(logged.candidates, logged.page_rows, logged.plan.depths,
                                                     clicked, logged.strategy_ms if logged.strategy_ms.size else None)
            source = logged.model_versions.get("plan")
            if source in ("baseline", "learned"):
                plan_gain = (source == "baseline", page_gain(self.reward, logged.page_rows, clicked))
            if logged.teams.size:
                on_page = np.isin(logged.page_rows[: logged.teams.size], clicked)
                interleaving = (int((on_page & (logged.teams == TEAM_LEARNED)).sum()),
                                int((on_page & (logged.teams == TEAM_BASELINE)).sum()))
        full = self.full_information(logged.query, clicked, logged.plan.depths, logged) if entry.first else None
        plan_rewards, observed = (None, None) if full is None else full
        lesson = Lesson(logged.query, entry.ts,
                        logged.page_rows if entry.first else np.empty(0, dtype=np.int64), clicked,
                        x=logged.x, plan=logged.plan if entry.first and plan_rewards is None else None,
                        reward=reward if plan_rewards is None else None, strategy_rewards=per_strategy,
                        plan_rewards=plan_rewards, plan_observed=observed,
                        success_depths=np.asarray(logged.plan.depths) if entry.first else None,
                        success_hits=hits, plan_gain=plan_gain, interleaving=interleaving)
        retrained = self.apply(lesson)
        return FeedbackResult(entry.event_id, len(entry.events), 0, entry.first, reward, retrained)

    def full_information(self, query: str, clicked: np.ndarray, served: tuple[int, ...],
                         logged: LoggedEvent | None = None) -> tuple[np.ndarray, np.ndarray | None] | None:
        """The reward of every menu plan on the clicks of a search for ``query`` that served
        the plan of depths ``served``, and which plans learn it (None: all; ``policy.learning =
        "served_subplans"``: those at most as deep as ``served`` in every strategy); None when
        the policy learns bandit feedback (by config, or because it cannot learn full
        information). Each plan is valued by the clicked items on the page it would have shown,
        at their positions there: ordered by RRF (:func:`ltrr.reward.plan_page_rewards`, one
        retrieval per strategy at its largest menu depth, outside the engine lock), or, under
        ``policy.plan_pages = "ranker"`` when the learned ranker ranked the ``logged`` search and
        only its sub-plans learn, by that ranker from the logged candidates (no retrieval)."""
        engine = self.engine
        policy = engine.policy
        mode = engine.config.policy.learning
        if mode == "bandit" or not policy.adaptive or not policy.learns_plan_rewards:
            return None
        within = None
        if mode == "served_subplans":
            within = np.asarray((policy.menu.plans <= np.asarray(served, dtype=np.int64)[None, :]).all(axis=1))
            ranked = self._ranker_page_rewards(logged, clicked, within) if logged is not None else None
            if ranked is not None:
                return ranked, within
        rewards = plan_page_outcomes(engine, QueryBatch((query,)), clicked, self.plan_latency())
        return rewards, within

    def _ranker_page_rewards(self, logged: LoggedEvent, clicked: np.ndarray, within: np.ndarray) -> np.ndarray | None:
        """Rewards of the ``within`` plans (0 for the others, which do not learn) from the pages the
        learned ranker would have shown with the ``logged`` candidates; None unless
        ``policy.plan_pages = "ranker"``, the learned ranker ranked that page and the features
        were built with the engine's current schema."""
        engine = self.engine
        ranker = engine.ranker
        if (engine.config.policy.plan_pages != "ranker" or not ranker.is_fitted
                or logged.model_versions.get("ranker", "fusion:").startswith("fusion:")
                or logged.model_versions.get("features") != engine.features.schema.fingerprint
                or len(logged.candidates) != len(logged.features)):
            return None
        menu = engine.policy.menu
        plans = menu.plans[within]
        pages = RankerPlanPages(plans, menu.strategies, engine.features.schema, k=engine.config.page_size,
                                match_when_off=engine.features.match_when_off)
        shown = pages.pages(logged.candidates, logged.features, logged.plan.strategies, logged.plan.depths, ranker)
        rewards = np.zeros(menu.n_actions, dtype=np.float64)
        rewards[within] = ranked_page_rewards(self.reward, shown.pages, clicked, plans, self.plan_latency()[within])
        return rewards

    def plan_latency(self) -> np.ndarray:
        """Every menu plan's latency (ms) as the reward prices it: the strategies' declared
        costs with ``policy.latency_source = "declared"`` (repeatable), else the engine's
        measured estimates."""
        engine = self.engine
        menu = engine.policy.menu
        if engine.config.policy.latency_source != "declared":
            return engine.latency.plan_ms(menu.plans)[0]
        strategies = engine.strategies
        return np.array([sum(strategies[n].cost_ms(int(d)) for n, d in zip(menu.strategies, row, strict=True) if d > 0)
                         for row in menu.plans], dtype=np.float64)

    def credit(self, cands: Candidates, page: np.ndarray, depths: tuple[int, ...],
               clicked: np.ndarray, strategy_ms: np.ndarray | None = None) -> tuple[float, np.ndarray, np.ndarray]:
        """Reward, per-strategy rewards and per-strategy hits (drew a clicked item) of a decision
        (``cands``, the ``page`` shown, the plan's ``depths``) given its ``clicked`` rows."""
        in_clicks = np.isin(cands.items, clicked)
        spec = self.reward
        reward, per = decision_rewards(spec, cands.found, in_clicks, depths,
                                       page_weights(spec, cands.items, page), strategy_ms)
        hits = np.asarray(cands.found[in_clicks].any(axis=0)) if in_clicks.any() else np.zeros(len(depths), dtype=bool)
        return reward, per, hits

    def learn_from_record(self, record: LogRecord, *, train_ranker: bool = True) -> LogStep:
        """Learn from one logged search as the engine would have online (replay).

        The logged ``shown``/``clicks`` are what the user saw. Every strategy retrieves once at
        its largest menu depth, which tells, for every menu plan, whether its candidates would
        have contained the clicked items. Records with a plan over this menu and context
        features of the policy's size (ltrr logs) teach the policy bandit feedback on the logged
        plan; foreign records teach it every plan's reward (full information,
        :meth:`~ltrr.contracts.policy.Policy.warm_start`). The ranker gets a training event
        (features of the shown items, clicks as labels; only for records with clicks; skipped
        when ``train_ranker`` is False) and the strategies observe the impressions and clicks.
        """
        engine = self.engine
        menu = engine.policy.menu
        query, ts = record.query, float(record.ts)
        batch, x = engine.context_of(query, ts)
        plan = record.plan
        bandit = (plan is not None and record.x is not None and tuple(plan.strategies) == menu.strategies
                  and record.x.shape == (engine.policy.n_features,))
        if bandit:
            x = np.asarray(record.x, dtype=np.float64)
        shown_all = engine.catalog.rows_of(record.shown)
        clicked_all = engine.catalog.rows_of(record.clicks)
        unknown = int((shown_all < 0).sum() + (clicked_all < 0).sum())
        shown_rows, clicked_rows = shown_all[shown_all >= 0], clicked_all[clicked_all >= 0]
        spec = self.reward
        with engine.lock:
            chosen = engine.policy.select(x, engine.policy_rng)
        weights = page_weights(spec, clicked_rows, shown_all)
        out = plan_outcomes(engine, batch, clicked_rows, weights)
        max_depth = menu.plans.max(axis=0)
        logged_action, logged_reward, ips_weight = -1, None, None
        if bandit:
            assert plan is not None
            depths = np.asarray(plan.depths, dtype=np.int64)
            logged_action = menu.action_of(plan.depths)
            drew = out.ranks <= depths[None, :]  # [clicks, strategies]
            computed, per_strategy = decision_rewards(spec, drew, np.ones(drew.shape[0], dtype=bool),
                                                      plan.depths, weights, engine.latency.strategy_ms(plan.depths)[0])
            logged_reward = float(record.reward) if record.reward is not None else computed
            p_now = engine.policy.probabilities(x)
            ips_weight = float(p_now[logged_action]) / plan.propensity if logged_action >= 0 else 0.0
            # the policy learns as the live engine did: every plan's page-valued reward under
            # ``policy.learning = "full_information"``, else the logged plan's reward
            full = self.full_information(query, clicked_rows, plan.depths)
            page_rewards, observed = (None, None) if full is None else full
            lesson = Lesson(query, ts, shown_rows, clicked_rows, x=x,
                            plan=plan if page_rewards is None else None,
                            reward=logged_reward if page_rewards is None else None,
                            strategy_rewards=per_strategy, plan_rewards=page_rewards, plan_observed=observed,
                            success_depths=depths,
                            success_hits=np.asarray(drew.any(axis=0)))
        else:
            lesson = Lesson(query, ts, shown_rows, clicked_rows, x=x, plan_rewards=out.rewards,
                            success_depths=max_depth, success_hits=(out.ranks <= max_depth[None, :]).any(axis=0))
        if train_ranker and clicked_rows.size and shown_rows.size:
            logged_plan = plan if bandit and plan is not None else chosen
            self._log_training_event(record, batch, x, logged_plan, out.results, shown_rows,
                                     np.asarray(logged_plan.depths) if logged_plan is plan else max_depth,
                                     clicked_rows)
        retrained = self.apply(lesson, ranker=train_ranker)
        return LogStep("bandit-feedback" if bandit else "full-information", x, int(chosen.action),
                       out.rewards, out.recall, int(clicked_rows.size), logged_action, logged_reward,
                       ips_weight, unknown, retrained)

    def _log_training_event(self, record: LogRecord, batch: QueryBatch, x: np.ndarray, plan: Plan,
                            results: list[tuple[np.ndarray, np.ndarray]], shown_rows: np.ndarray,
                            depths: np.ndarray, clicked_rows: np.ndarray) -> None:
        """Store the shown items as a decision with served-time features and the clicks as its
        feedback (a ranker training event)."""
        engine = self.engine
        n, names = shown_rows.size, engine.policy.menu.strategies
        scores = np.full((n, len(names)), np.nan, dtype=np.float32)
        ranks = np.full((n, len(names)), np.nan, dtype=np.float32)
        for s, (ids, sc) in enumerate(results):
            ids, sc = ids[: int(depths[s])], sc[: int(depths[s])]
            at_c, at_i = np.nonzero(shown_rows[:, None] == ids[None, :])
            scores[at_c, s] = sc[at_i]
            ranks[at_c, s] = at_i + 1
        cands = Candidates(tuple(names), shown_rows.copy(), scores, ranks, tuple(int(d) for d in depths))
        event_id = f"{record.offset}:{record.event_id}"
        engine.events.append(Decision(
            event_id=event_id, ts=float(record.ts), query=record.query,
            context=dict(record.context), x=x, plan=plan, candidates=cands,
            features=engine.build_features(batch, cands), page=shown_rows,
            page_scores=np.zeros(n, dtype=np.float32),
            page_ids=tuple(engine.catalog.ids[r] for r in shown_rows),
            model_versions={"policy": f"{engine.policy.type_name}@{engine.policy.n_updates_}",
                            "ranker": engine.ranker.version_, "features": engine.features.schema.fingerprint,
                            "source": "replay"}))
        engine.events.add_feedback(event_id, [FeedbackEvent(engine.catalog.ids[r]) for r in clicked_rows],
                                   float(record.ts))

    # ------------------------------------------------------------------ the one path
    def apply(self, lesson: Lesson, *, ranker: bool = True) -> bool:
        """Apply one lesson (see the module docstring for the locking rule); in ``"inline"`` mode
        retrain what is due. Returns whether the ranker was retrained (``ranker=False``: the
        ranker's schedule is neither advanced nor run, e.g. a replay of the retrieval only)."""
        engine = self.engine
        with engine.lock:
            if lesson.reward is not None and lesson.plan is not None and lesson.x is not None:
                engine.policy.update(lesson.x, lesson.plan, lesson.reward, lesson.strategy_rewards)
            elif lesson.plan_rewards is not None and lesson.x is not None and engine.policy.learns_plan_rewards:
                engine.policy.warm_start(lesson.x[None, :], lesson.plan_rewards[None, :],
                                         observed=None if lesson.plan_observed is None else lesson.plan_observed[None, :])
            if lesson.success_depths is not None and lesson.success_hits is not None:
                engine.success.observe(lesson.success_depths, lesson.success_hits)
            self._teach_incumbent(lesson)
            for strat in engine.strategies.values():
                if isinstance(strat, LearnsFromFeedback):
                    strat.observe(lesson.query, lesson.shown, lesson.clicked, lesson.ts)
            if ranker:
                self.clock.events += 1
                self.clock.clicks += int(lesson.clicked.size)
                if self.schedule is not None:
                    by_clicks = self.engine.config.ranker.retrain_unit == "clicks"
                    self.schedule.observe(int(lesson.clicked.size) if by_clicks else 1)
        if self.retrain != "inline":
            return False
        retrained = self.retrain_ranker(lesson.ts) if ranker and self.ranker_due() else False
        self.retrain_strategies()
        return retrained

    def _teach_incumbent(self, lesson: Lesson) -> None:
        """Evidence for the incumbent's gates (caller holds the engine lock)."""
        inc = self.engine.incumbent
        if lesson.plan_gain is not None:
            inc.plans.observe(*lesson.plan_gain)
        if lesson.interleaving is not None:
            switch, evidence = inc.ranker.observe(*lesson.interleaving)
            if switch is not None:
                inc.record_switch("ranker", switch, lesson.ts,
                                  {**evidence, "learned_ranker": self.engine.ranker.version_})

    # ------------------------------------------------------------------ retraining
    def ranker_due(self) -> bool:
        """Whether the ranker's retraining schedule (``ranker.retrain_*``, in clicks or feedback
        events) is due."""
        return self.schedule is not None and self.schedule.due

    def strategies_due(self) -> list[str]:
        """Retrainable strategies whose observed clicks reached their ``retrain_every``."""
        due: list[str] = []
        for sc in self.engine.config.strategies:
            strat = self.engine.strategies.get(sc.name)
            if (isinstance(strat, Retrainable) and sc.retrain_every
                    and strat.n_observed >= sc.retrain_every and sc.name not in self._retraining):
                due.append(sc.name)
        return due

    def retrain_due(self) -> tuple[bool, list[str]]:
        """Run every schedule that is due (the service's learner thread calls this)."""
        ranker = self.retrain_ranker() if self.ranker_due() else False
        return ranker, self.retrain_strategies()

    def retrain_ranker(self, ts: float | None = None) -> bool:
        """Train a new ranker on the logged features of recent events with clicks, aside, and
        swap it in; False (and the clock reset) when fewer than 10 queries have clicks.

        With the incumbent's off-policy gate, a share of the logged queries is held out of
        training and the new ranker is compared with the baseline ranking on them
        (:meth:`_judge_offline`)."""
        from ltrr.ranking.training import training_set

        engine = self.engine
        inc = engine.config.incumbent
        with self._train_lock:
            events = list(engine.events.training_events(engine.config.ranker.train_window))
            held: list[tuple[LoggedEvent, dict[str, float]]] = []
            if inc.gate_ranking and inc.counterfactual:
                held = [e for e in events if held_out(e[0].event_id, inc.holdout_share)]
                events = [e for e in events if not held_out(e[0].event_id, inc.holdout_share)]
            data = training_set(events, engine.features.schema)
            with engine.lock:
                self.clock.reset()
                current = engine.ranker
            if data.n_queries < 10:  # too little to learn from: try again after another interval
                if self.schedule is not None:
                    self.schedule.since = 0
                return False
            fresh, report = current.trained(data)
            with engine.lock:
                engine.ranker = fresh
                if self.schedule is not None:
                    self.schedule.trained()
            self.last_training_report = report
            if held:
                self._judge_offline(fresh, events + held, held, time.time() if ts is None else ts)
            return True

    def _judge_offline(self, ranker: Any, all_events: list[tuple[LoggedEvent, dict[str, float]]],
                       held: list[tuple[LoggedEvent, dict[str, float]]], ts: float) -> None:
        """Compare ``ranker`` with the baseline ranking on the held-out queries (inverse-
        propensity click DCG, examination estimated on every logged page) and let the
        incumbent switch on the bound."""
        from ltrr.errors import DataError
        from ltrr.ranking.counterfactual import compare_rankings, examination
        from ltrr.ranking.fusion import FusionSpec, fuse

        engine, inc = self.engine, self.engine.config.incumbent
        schema_width = len(engine.features.schema.names)
        usable = [e for e in held if e[0].features.ndim == 2 and e[0].features.shape[1] == schema_width]
        try:
            exam = examination(all_events)
        except DataError:
            return
        spec = FusionSpec("rrf", inc.rrf_k)
        result = compare_rankings(usable, lambda ev: ranker.score(ev.features), lambda ev: fuse(ev.candidates, spec),
                                  exam, k=engine.config.page_size, clip=inc.ipw_clip)
        if result.n < inc.min_holdout_queries:
            return
        lower, upper = result.bounds(inc.confidence)
        with engine.lock:
            switch = engine.incumbent.ranker.offline_evidence(lower, upper)
            if switch is not None:
                engine.incumbent.record_switch("ranker", switch, ts,
                                               {**result.to_dict(inc.confidence), "learned_ranker": ranker.version_})

    def retrain_strategies(self, force: bool = False) -> list[str]:
        """Rebuild retrainable strategies whose clicks observed since their last training reached
        their ``retrain_every`` (every one with observed clicks when ``force``); returns the
        names rebuilt. Each is built outside the lock (searches keep the old one), then
        ``hand_over`` moves the clicks that arrived meanwhile and the engine's strategies mapping
        is replaced, under the lock."""
        engine = self.engine
        done: list[str] = []
        for sc in engine.config.strategies:
            with engine.lock:
                old = engine.strategies.get(sc.name)
                if not isinstance(old, Retrainable) or sc.name in self._retraining:
                    continue
                n_obs = old.n_observed
                if not (n_obs > 0 and (force or (sc.retrain_every and n_obs >= sc.retrain_every))):
                    continue
                self._retraining.add(sc.name)
            try:
                new = old.retrained(engine.catalog)
                with engine.lock:
                    old.hand_over(new)
                    engine.replace_strategy(sc.name, new)
                done.append(sc.name)
            finally:
                with engine.lock:
                    self._retraining.discard(sc.name)
        return done

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        """The schedule's counters (saved in snapshots and replay checkpoints)."""
        return {"events_since_train": self.clock.events, "clicks_since_train": self.clock.clicks,
                "schedule": None if self.schedule is None else self.schedule.to_dict()}

    def restore(self, state: dict[str, Any]) -> None:
        self.clock.events = int(state.get("events_since_train", 0))
        self.clock.clicks = int(state.get("clicks_since_train", 0))
        if state.get("schedule") is not None and self.schedule is not None:
            self.schedule = ClickRetrainSchedule.from_dict(state["schedule"])
