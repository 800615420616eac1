"""Full-information value of every retrieval plan, computed with the engine's own ranker.

Strategies are deterministic and a depth-``d`` list is the prefix of the depth-``D`` list, so one
request answered with every strategy at its maximum depth holds the candidates of every smaller
plan: a plan's candidate set is the union of each strategy's first ``depth`` items. A candidate's
ranker features depend on the plan only through provenance (``s_score``/``s_rank``/``s_found`` of
the strategies that did not draw it at the plan's depth, ``n_found_by``, ``best_rank``); the rest
(text matches, click-memory counts, popularity, query hints) is the same whatever the plan. So the
page every plan *would have shown* is recovered exactly from the logged max-depth decision: mask
the provenance, score with the ranker that was live for that request, and order the way the
engine does (score, then position in the plan's union). Its value is the engine's reward for that
page in expectation under a click model, minus the plan's cost.

This is what "the best fixed plan in hindsight" means for regret: the same ranker, the same
memory state, only the plan differs. A candidate's masked row depends only on which strategies
include it, so each round scores at most one row per (candidate, inclusion pattern) in one call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

import numpy as np

from ltrr.features import FeatureSchema
from ltrr.offline.metrics import ndcg_from_grades
from ltrr.ranking.plan_pages import RankerPlanPages
from ltrr.reward import expected_page_reward
from ltrr.types import Decision, Plan, QueryBatch


class ClickProbabilities(Protocol):
    def click_probabilities(self, page_grades: Any) -> np.ndarray: ...


def expected_reward(page_grades: np.ndarray, click_model: ClickProbabilities, kind: str,
                    cost: np.ndarray | float) -> np.ndarray:
    """The engine's reward (``reward.kind``, :func:`ltrr.reward.expected_page_reward`) for each
    page in expectation under ``click_model``, minus ``cost``, clipped to [-1, 1] like the
    engine's. ``page_grades`` is ``float[A, k]`` with ``-1`` where a page has no document."""
    grades = np.asarray(page_grades, dtype=np.float64)
    probs = click_model.click_probabilities(grades)
    return expected_page_reward(kind, np.where(grades < 0, 0.0, probs), cost)


def value_pages(pages: np.ndarray, relevant: Mapping[int, float], click_model: ClickProbabilities, *,
                kind: str, cost: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Expected reward and true nDCG@k of each page (``int64[A, k]``, ``-1`` padded) for a query
    whose graded relevance is ``relevant`` (catalog row -> grade)."""
    pages = np.asarray(pages, dtype=np.int64)
    rel_rows = np.fromiter(relevant.keys(), dtype=np.int64, count=len(relevant))
    rel_grades = np.fromiter(relevant.values(), dtype=np.float64, count=len(relevant))
    grades = np.zeros(pages.shape, dtype=np.float64)
    if rel_rows.size:
        order = np.argsort(rel_rows)
        pos = np.clip(np.searchsorted(rel_rows[order], pages), 0, rel_rows.size - 1)
        hit = rel_rows[order][pos] == pages
        grades = np.where(hit, rel_grades[order][pos], 0.0)
    grades = np.where(pages < 0, -1.0, grades)
    value = expected_reward(grades, click_model, kind, cost)
    if not rel_rows.size:
        return value, np.full(pages.shape[0], np.nan)
    judged = np.broadcast_to(rel_grades, (pages.shape[0], rel_grades.size))
    ndcg = ndcg_from_grades(np.where(grades < 0, np.nan, grades), judged, pages.shape[1])
    return value, ndcg


class HindsightPlanValuer:
    """Pages (:class:`~ltrr.ranking.plan_pages.RankerPlanPages`) and values (:func:`value_pages`) of every plan, with the
    engine's reward kind and a cost of ``cost_per_candidate`` per candidate a plan draws."""

    def __init__(self, plans: np.ndarray, strategies: Sequence[str], schema: FeatureSchema,
                 click_model: ClickProbabilities, *, kind: str, cost_per_candidate: float, k: int = 10,
                 match_when_off: Literal["score", "missing"] = "score"):
        self.pages = RankerPlanPages(plans, strategies, schema, k=k, match_when_off=match_when_off)
        self.click_model = click_model
        self.kind = kind
        self.cost = float(cost_per_candidate) * self.pages.plans.sum(axis=1)

    def value(self, pages: np.ndarray, relevant: Mapping[int, float]) -> tuple[np.ndarray, np.ndarray]:
        """Expected reward and true nDCG of each plan's page."""
        return value_pages(pages, relevant, self.click_model, kind=self.kind, cost=self.cost)


def valued_plans(menu: Any) -> np.ndarray:
    """The plans worth valuing for a :class:`~ltrr.contracts.policy.PlanMenu`: its own plans first (in
    action order), then the fixed baselines it leaves out — every strategy at its maximum depth
    (outside the menu when over the budget) and each strategy alone at its maximum depth."""
    max_plan = np.array([max(o) for o in menu.options], dtype=np.int64)
    alone = [np.where(np.arange(max_plan.size) == s, max_plan, 0) for s in range(max_plan.size)]
    plans = np.vstack([menu.plans, *[p for p in [max_plan, *alone] if menu.action_of(p) < 0]])
    return plans[np.sort(np.unique(plans, axis=0, return_index=True)[1])]


class HindsightRecorder:
    """Values every plan on every request of an online run (see :class:`HindsightPlanValuer`)
    with the ranker and click memory of that moment: pass it as ``run_session(observer=...)``,
    which calls it with each decision before the decision's feedback changes them (and after
    the request's latency was measured). ``relevance`` yields each request's
    ``{catalog row: grade}`` in stream order.

    When the engine's plan drew less than the valued plans need, a *shadow* retrieval with every
    strategy at its largest valued depth is made for the table only: strategies, features and
    the ranker are read, never written, so the run itself (pages, clicks, learning) is exactly
    the run without the recorder — the table is the full-information view of the run's own
    world, which is what regret against the best fixed plan in hindsight is defined on.
    """

    def __init__(self, engine: Any, relevance: Sequence[Mapping[int, float]], valuer: HindsightPlanValuer):
        self.engine, self.relevance, self.valuer = engine, relevance, valuer
        self._value: list[np.ndarray] = []
        self._ndcg: list[np.ndarray] = []
        self._cands: list[np.ndarray] = []
        self.n_shadow = 0
        strategies = valuer.pages.strategies
        self._max = dict(zip(strategies, valuer.pages.plans.max(axis=0).tolist(), strict=True))

    def _max_depth_view(self, d: Decision) -> Decision:
        drawn = dict(zip(d.plan.strategies, d.plan.depths, strict=True))
        if all(drawn[s] >= depth for s, depth in self._max.items()):
            return d
        self.n_shadow += 1
        batch = QueryBatch((d.query,))
        names = tuple(d.plan.strategies)
        plan = Plan(names, tuple(int(self._max.get(n, drawn[n])) for n in names))
        cands = self.engine.retrieve_union(batch, names, plan.depths)
        return replace(d, plan=plan, candidates=cands, features=self.engine.build_features(batch, cands))

    def __call__(self, d: Decision) -> None:
        pages = self.valuer.pages(self._max_depth_view(d), self.engine.ranker)
        value, ndcg = self.valuer.value(pages.pages, self.relevance[len(self._value)])
        self._value.append(value)
        self._ndcg.append(ndcg)
        self._cands.append(pages.n_candidates)

    def table(self) -> HindsightTable:
        return HindsightTable(self.valuer.pages.plans, np.vstack(self._value), np.vstack(self._ndcg),
                              np.vstack(self._cands))


def regret_curve_summary(regret: np.ndarray) -> dict[str, Any]:
    """Total of a cumulative regret curve, its values at the quarters, and its mean slope over
    the first and the second half (growth is sublinear when the second is below the first)."""
    n = regret.size
    half = n // 2
    first = float(regret[half - 1] / half) if half else float("nan")
    second = float((regret[-1] - regret[half - 1]) / (n - half)) if half else float("nan")
    return {"total": round(float(regret[-1]), 2) if n else 0.0,
            "at_quarters": [round(float(regret[max(int(n * f) - 1, 0)]), 2) for f in (0.25, 0.5, 0.75, 1.0)] if n else [],
            "slope_first_half": round(first, 5), "slope_second_half": round(second, 5),
            "slope_ratio": round(second / first, 3) if first > 0 else None,
            "second_half_slope_below_first": bool(second < first)}


@dataclass(frozen=True)
class HindsightTable:
    """Per-round value (``float[T, A]``), true nDCG@k and candidate count of every plan."""

    plans: np.ndarray
    value: np.ndarray
    ndcg: np.ndarray
    n_candidates: np.ndarray

    def save(self, path: str | Any) -> None:
        np.savez(path, plans=self.plans, value=self.value, ndcg=self.ndcg, n_candidates=self.n_candidates)

    @classmethod
    def load(cls, path: str | Any) -> HindsightTable:
        with np.load(path, allow_pickle=False) as z:
            return cls(z["plans"], z["value"], z["ndcg"], z["n_candidates"])

    def actions_of(self, depths: np.ndarray) -> np.ndarray:
        """The table column of each round's plan (``int[T, S]`` depths); -1 when not valued."""
        index = {tuple(p): a for a, p in enumerate(self.plans.tolist())}
        return np.array([index.get(tuple(d), -1) for d in np.asarray(depths).tolist()], dtype=np.int64)

    def best_fixed(self, n_menu: int | None = None) -> int:
        """The plan (among the first ``n_menu``: the menu's) with the highest mean value."""
        return int(np.argmax(self.value[:, :n_menu].mean(axis=0)))

    def best_by_type(self, qtypes: Sequence[str], n_menu: int | None = None) -> dict[str, int]:
        qt = np.asarray(qtypes)
        return {t: int(np.argmax(self.value[qt == t, :n_menu].mean(axis=0))) for t in sorted(set(qt.tolist()))}

    def regret(self, depths: np.ndarray, qtypes: Sequence[str], n_menu: int | None = None) -> dict[str, Any]:
        """Pseudo-regret of the plans a run chose (``int[T', S]``, a prefix of the table's rounds)
        against the best fixed plan in hindsight, the best plan per query type and the per-round
        best plan, all on this table."""
        actions = self.actions_of(depths)
        if (actions < 0).any():
            raise ValueError(f"{int((actions < 0).sum())} rounds chose plans this table does not value")
        t = np.arange(actions.size)
        got = self.value[t, actions]
        by_type = self.best_by_type(qtypes, n_menu)
        per_type = self.value[t, [by_type[q] for q in np.asarray(qtypes)[: actions.size].tolist()]]
        oracle = self.value[: actions.size, :n_menu].max(axis=1)
        return {"value_per_round": round(float(got.mean()), 5),
                "vs_best_fixed": regret_curve_summary(np.cumsum(self.value[t, self.best_fixed(n_menu)] - got)),
                "vs_best_plan_per_query_type": regret_curve_summary(np.cumsum(per_type - got)),
                "vs_per_round_best_plan": regret_curve_summary(np.cumsum(oracle - got))}
