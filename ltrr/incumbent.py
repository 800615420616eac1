"""The safe incumbent: learned components replace a baseline only when the evidence says so.

Until a learned component is shown to be better, the engine serves a configurable baseline:
reciprocal rank fusion of the plan's candidates for ranking, and a fixed plan (by default every
strategy at the middle of its menu's depths, :func:`middle_depth`) for retrieval.

**Ranking.** Once the learner has trained a ranker, a share of searches shows a team-draft
interleaving (Radlinski et al., 2008) of the baseline's and the learned ranker's orders; a click
credits the team that placed the item. Each interleaved search with clicks for one side only is
a win or a loss for the learned ranker. A sequential probability ratio test (Wald) of
``H0: P(win) = 1/2`` against ``H1: P(win) = 1/2 + min_effect``, valid however often it is looked
at, promotes the learned ranker when it accepts H1 at the configured confidence, and restarts; a
promoted ranker keeps being compared on a smaller share of searches and is demoted when a test
accepts H0.

**Plans.** Conservative-bandit style (Wu et al., 2016): the learned policy chooses the plan only
while the engine's decayed realized page gain (the clicks part of the reward, without the cost)
stays at least ``(1 - alpha)`` times what the baseline plan is estimated to earn over the same
rounds; otherwise the baseline plan is served. The estimate is the baseline plan's own mean gain
on the rounds it served; with ``plan_monitor_every`` > 0 it is kept current while the learned
policy chooses, by serving the baseline plan every that many searches (the ranker and the click
memory keep learning, so what the baseline plan earns changes). The gate has hysteresis: once the baseline plan took over from the
learned policy, the learned policy takes over again only when the realized gain exceeds the
bound by ``resume_rounds`` rounds of the baseline's mean gain, so it does not flip on every
round whose gain crosses the bound. The choice is a deterministic function of the history, so the logged
propensity stays exact (the learned policy's, or 1 for the baseline plan).

Every switch is recorded with its time, round and evidence (:attr:`Incumbent.switches`), shown
in ``/metrics`` and the reports, saved with the engine, and reversible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ltrr.config import IncumbentConfig

RANKING_BASELINE, RANKING_LEARNED, RANKING_INTERLEAVED = "baseline", "learned", "interleaved"
TEAM_BASELINE, TEAM_LEARNED = 0, 1


def middle_depth(options: tuple[int, ...] | list[int], at_least: int = 0) -> int:
    """The default baseline depth of a strategy: the lower median of its menu's positive depths
    (10/50/100 -> 50, 10/50 -> 10, 30/100 -> 30), raised to the smallest depth >= ``at_least``
    (the page size asked for; the largest depth when none is), 0 when it has none. A list's
    lower half rarely reaches a fused page of 10, so the baseline keeps most of the largest
    plan's page at a fraction of its candidates, and the plan gate's bound is not the most
    expensive plan's; a request for a longer page (``ltrr run --k 100``) still gets one."""
    positive = sorted(int(d) for d in options if int(d) > 0)
    if not positive:
        return 0
    middle = positive[(len(positive) - 1) // 2]
    if middle >= at_least:
        return middle
    return next((d for d in positive if d >= at_least), positive[-1])


@dataclass
class SequentialTest:
    """Wald's SPRT on the learned side's win rate among decisive interleaved searches."""

    min_effect: float
    confidence: float
    wins: int = 0
    losses: int = 0

    @property
    def llr(self) -> float:
        """Log-likelihood ratio of ``P(win) = 1/2 + min_effect`` against ``1/2``."""
        p1 = 0.5 + self.min_effect
        return self.wins * math.log(p1 / 0.5) + self.losses * math.log((1.0 - p1) / 0.5)

    def decision(self) -> str | None:
        """``"better"`` (accept H1), ``"not_better"`` (accept H0) or None (keep testing); the
        error rates of both decisions are ``1 - confidence``."""
        err = 1.0 - self.confidence
        upper, lower = math.log((1.0 - err) / err), math.log(err / (1.0 - err))
        if self.llr >= upper:
            return "better"
        if self.llr <= lower:
            return "not_better"
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"wins": self.wins, "losses": self.losses, "llr": round(self.llr, 4)}


@dataclass
class RankerGate:
    """Which ranking serves a search, and the interleaving evidence (see the module docstring)."""

    config: IncumbentConfig
    serving: str = RANKING_BASELINE
    test: SequentialTest = field(init=False)
    comparisons: int = 0

    def __post_init__(self) -> None:
        self.test = SequentialTest(self.config.min_effect, self.config.confidence)

    def mode(self, learned_available: bool, rng: np.random.Generator) -> str:
        """The ranking of the next search: the serving one, or an interleaving of both."""
        if not self.config.gate_ranking:
            return RANKING_LEARNED
        if not learned_available:
            return RANKING_BASELINE
        share = self.config.interleave_share if self.serving == RANKING_BASELINE else self.config.monitor_share
        return RANKING_INTERLEAVED if rng.random() < share else self.serving

    def offline_evidence(self, lower: float, upper: float) -> str | None:
        """An off-policy comparison of the current learned ranker with the baseline (bounds of
        the mean difference): promote when ``lower > 0``, demote when ``upper < 0``."""
        if not self.config.gate_ranking:
            return None
        if lower > 0.0 and self.serving == RANKING_BASELINE:
            self.serving = RANKING_LEARNED
            return "promote"
        if upper < 0.0 and self.serving == RANKING_LEARNED:
            self.serving = RANKING_BASELINE
            return "demote"
        return None

    def observe(self, learned_clicks: int, baseline_clicks: int) -> tuple[str | None, dict[str, Any]]:
        """Credit one interleaved search; returns ``("promote" | "demote" | None, evidence)``."""
        if learned_clicks == baseline_clicks:
            return None, {}
        self.comparisons += 1
        if learned_clicks > baseline_clicks:
            self.test.wins += 1
        else:
            self.test.losses += 1
        verdict = self.test.decision()
        evidence = {**self.test.to_dict(), "test": "sprt", "min_effect": self.config.min_effect,
                    "confidence": self.config.confidence, "verdict": verdict}
        switch = None
        if verdict == "better" and self.serving == RANKING_BASELINE:
            self.serving, switch = RANKING_LEARNED, "promote"
        elif verdict == "not_better" and self.serving == RANKING_LEARNED:
            self.serving, switch = RANKING_BASELINE, "demote"
        if verdict is not None:  # decided: a fresh test watches what is served now
            self.test = SequentialTest(self.config.min_effect, self.config.confidence)
        return switch, evidence


@dataclass
class PlanGate:
    """Conservative choice between the learned policy's plan and the baseline plan."""

    config: IncumbentConfig
    #: decayed counts and gain sums of the rounds each side served (feedback received)
    n_baseline: float = 0.0
    gain_baseline: float = 0.0
    n_learned: float = 0.0
    gain_learned: float = 0.0
    #: decayed rounds served without feedback yet (counted with gain 0: pessimistic)
    pending: float = 0.0
    #: rounds the baseline plan served with feedback, not decayed (its warm-up count)
    baseline_rounds: int = 0
    #: whether the baseline plan ever took over from the learned policy (from then on, the
    #: learned policy resumes only with ``resume_rounds`` of slack)
    demoted: bool = False

    @property
    def decay(self) -> float:
        hl = self.config.gain_half_life
        return 0.5 ** (1.0 / hl) if hl > 0 else 1.0

    def baseline_mean(self) -> float | None:
        return self.gain_baseline / self.n_baseline if self.n_baseline > 0 else None

    def slack(self) -> float | None:
        """How far the decayed realized gain, with a worst-case next round (gain 0), exceeds
        ``(1 - alpha)`` of the baseline's estimate over every round, this one included; None
        before the baseline served ``min_baseline_rounds``.

        The warm-up counts rounds, not their decayed weight: decayed, the baseline's count fell
        back under ``min_baseline_rounds`` whenever the learned policy served long enough
        (about 3,000 rounds at the default half-life), which demoted it for one baseline round
        every ~28 rounds for the rest of a 20,000-query movie stream."""
        mean = self.baseline_mean()
        if mean is None or self.baseline_rounds < self.config.min_baseline_rounds:
            return None
        rounds = self.n_baseline + self.n_learned + self.pending + 1.0
        return self.gain_baseline + self.gain_learned - (1.0 - self.config.alpha) * rounds * mean

    def learned_allowed(self, serving_learned: bool = True) -> bool:
        """Whether the learned policy may choose the next plan: the conservative condition
        (:meth:`slack` >= 0) while it serves and for its first promotion; to take over again
        after the baseline plan took over, a slack of ``resume_rounds`` rounds of the
        baseline's mean gain (hysteresis: a switch back needs evidence, not one lucky round)."""
        if not self.config.gate_plans:
            return True
        slack = self.slack()
        if slack is None:
            return False
        if serving_learned or not self.demoted:
            return slack >= 0.0
        mean = self.baseline_mean() or 0.0
        return slack >= self.config.resume_rounds * mean

    def served(self) -> None:
        """A search was answered (its gain arrives with its feedback)."""
        d = self.decay
        self.n_baseline *= d
        self.gain_baseline *= d
        self.n_learned *= d
        self.gain_learned *= d
        self.pending = self.pending * d + 1.0

    def observe(self, baseline: bool, gain: float) -> None:
        """The first feedback of a search: its realized page gain."""
        self.pending = max(self.pending - 1.0, 0.0)
        if baseline:
            self.n_baseline += 1.0
            self.gain_baseline += float(gain)
            self.baseline_rounds += 1
        else:
            self.n_learned += 1.0
            self.gain_learned += float(gain)


@dataclass
class Incumbent:
    """The ranking and plan gates of one engine, and the log of their switches."""

    config: IncumbentConfig
    ranker: RankerGate = field(init=False)
    plans: PlanGate = field(init=False)
    switches: list[dict[str, Any]] = field(default_factory=list)
    rounds: int = 0
    #: whether the learned policy chose the last gated plan (a change is a logged switch)
    learned_plans: bool = False

    def __post_init__(self) -> None:
        self.ranker = RankerGate(self.config)
        self.plans = PlanGate(self.config)

    def record_switch(self, component: str, action: str, ts: float, evidence: dict[str, Any]) -> None:
        self.switches.append({"component": component, "action": action, "round": self.rounds,
                              "ts": float(ts), "evidence": evidence})

    def plans_allowed(self, ts: float) -> bool:
        """The plan gate's decision for the next search (a change is recorded as a switch)."""
        allowed = self.plans.learned_allowed(self.learned_plans)
        if allowed != self.learned_plans:
            self.plans.demoted = self.plans.demoted or not allowed
            p = self.plans
            self.record_switch("policy", "promote" if allowed else "demote", ts, {
                "baseline_gain": round(p.gain_baseline, 4), "baseline_rounds": round(p.n_baseline, 2),
                "learned_gain": round(p.gain_learned, 4), "learned_rounds": round(p.n_learned, 2),
                "pending_rounds": round(p.pending, 2), "alpha": self.config.alpha})
            self.learned_plans = allowed
        return allowed

    def monitors_baseline_plan(self) -> bool:
        """Whether this search (the learned policy allowed) serves the baseline plan to keep its
        gain estimate current: every ``plan_monitor_every``-th round."""
        every = self.config.plan_monitor_every
        return self.config.gate_plans and every > 0 and self.rounds % every == every - 1

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        r, p = self.ranker, self.plans
        return {"rounds": self.rounds, "switches": list(self.switches), "learned_plans": self.learned_plans,
                "ranker": {"serving": r.serving, "comparisons": r.comparisons, "wins": r.test.wins,
                           "losses": r.test.losses},
                "plans": {"n_baseline": p.n_baseline, "gain_baseline": p.gain_baseline,
                          "n_learned": p.n_learned, "gain_learned": p.gain_learned, "pending": p.pending,
                          "demoted": p.demoted, "baseline_rounds": p.baseline_rounds}}

    def restore(self, d: dict[str, Any]) -> None:
        self.rounds = int(d.get("rounds", 0))
        self.switches = list(d.get("switches", []))
        self.learned_plans = bool(d.get("learned_plans", False))
        r = d.get("ranker", {})
        self.ranker.serving = str(r.get("serving", RANKING_BASELINE))
        self.ranker.comparisons = int(r.get("comparisons", 0))
        self.ranker.test.wins, self.ranker.test.losses = int(r.get("wins", 0)), int(r.get("losses", 0))
        p = d.get("plans", {})
        for key in ("n_baseline", "gain_baseline", "n_learned", "gain_learned", "pending"):
            setattr(self.plans, key, float(p.get(key, 0.0)))
        self.plans.demoted = bool(p.get("demoted", False))
        # states saved before the undecayed count existed: the decayed one is a lower bound
        self.plans.baseline_rounds = int(p.get("baseline_rounds", math.ceil(self.plans.n_baseline)))

    def status(self) -> dict[str, Any]:
        """What is served now and on what evidence (``/metrics``, reports)."""
        mean = self.plans.baseline_mean()
        return {"ranking": self.ranker.serving, "ranking_test": self.ranker.test.to_dict(),
                "interleaved_comparisons": self.ranker.comparisons,
                "learned_plans_allowed": self.plans.learned_allowed(self.learned_plans),
                "baseline_plan_gain": None if mean is None else round(mean, 5),
                "switches": len(self.switches)}
