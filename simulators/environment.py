"""The environment loop: a stream of simulated queries sent through an Engine, with clicks from a
click model over the queries' graded relevance fed back as feedback.

Metrics per query are computed against the *true* relevance (which the engine never sees):
nDCG@10 of the page, recall of the candidate set, candidates drawn, clicks, latency.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ltrr.engine import Engine
from ltrr.offline.metrics import ndcg_from_grades
from ltrr.types import Decision, Feedback
from simulators.movies import SimQuery

START_TS = 1_735_689_600.0  # 2025-01-01T00:00:00Z: simulated clocks start here
SECONDS_PER_QUERY = 37.0


def final_window(n: int) -> int:
    """Rounds in the "final window" of a run of ``n``: the last 500, or the last quarter of a
    shorter run."""
    return min(500, max(n // 4, 1))


class ClickModel(Protocol):
    def simulate(self, page_grades: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...


@dataclass
class SessionResult:
    """Per-query traces of one online session (arrays aligned with the query stream)."""

    policy: str
    qtypes: list[str]
    ndcg: np.ndarray
    recall: np.ndarray
    n_candidates: np.ndarray
    depth_drawn: np.ndarray
    clicks: np.ndarray
    latency_ms: np.ndarray
    depths: np.ndarray
    strategies: tuple[str, ...]
    stage_ms: dict[str, np.ndarray] = field(default_factory=dict)
    #: per round: how the page was ranked ("baseline", "learned", "interleaved"; "" ungated) and
    #: who chose the plan ("baseline", "learned"; "" ungated), from the decision's versions
    ranking: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    plan_source: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    #: the incumbent's switches during the run (component, action, round, evidence)
    switches: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        def stats(mask: np.ndarray) -> dict[str, float]:
            return {
                "queries": int(mask.sum()),
                "ndcg@10": float(np.nanmean(self.ndcg[mask])) if mask.any() else float("nan"),
                "candidate_recall": float(np.nanmean(self.recall[mask])) if mask.any() else float("nan"),
                "mean_candidates": float(self.n_candidates[mask].mean()) if mask.any() else float("nan"),
                "clicks_per_query": float(self.clicks[mask].mean()) if mask.any() else float("nan"),
            }
        all_mask = np.ones(len(self.qtypes), dtype=bool)
        out: dict[str, Any] = stats(all_mask)
        out["policy"] = self.policy
        out["mean_depth_drawn"] = float(self.depth_drawn.mean())
        out["latency_p50_ms"] = float(np.percentile(self.latency_ms, 50))
        out["latency_p99_ms"] = float(np.percentile(self.latency_ms, 99))
        qt = np.array(self.qtypes)
        out["by_query_type"] = {t: stats(qt == t) for t in sorted(set(self.qtypes))}
        share = (self.depths > 0).mean(axis=0)
        out["strategy_share"] = {s: float(v) for s, v in zip(self.strategies, share, strict=True)}
        out["strategy_share_by_query_type"] = {
            t: {s: float(v) for s, v in zip(self.strategies, (self.depths[qt == t] > 0).mean(axis=0), strict=True)}
            for t in sorted(set(self.qtypes))
        }
        out["stage_ms_mean"] = {k: float(np.mean(v)) for k, v in sorted(self.stage_ms.items())}
        half = len(self.qtypes) // 2
        out["ndcg@10_second_half"] = float(np.nanmean(self.ndcg[half:])) if half else out["ndcg@10"]
        w = final_window(len(self.qtypes))
        out["final_window"] = w
        out["ndcg@10_final"] = float(np.nanmean(self.ndcg[-w:]))
        out["mean_candidates_final"] = float(self.n_candidates[-w:].mean())
        if self.ranking.size and (self.ranking != "").any():
            out["learned_ranking_share_final"] = float((self.ranking[-w:] == "learned").mean())
        if self.plan_source.size and (self.plan_source != "").any():
            out["learned_plan_share_final"] = float((self.plan_source[-w:] == "learned").mean())
        out["incumbent_switches"] = [{k: s[k] for k in ("component", "action", "round")} for s in self.switches]
        return out


def run_session(engine: Engine, stream: Sequence[SimQuery], click_model: ClickModel, *,
                seed: int = 0, policy_name: str = "", progress: bool = False,
                k: int = 10, observer: Callable[[Decision], Any] | None = None) -> SessionResult:
    """Send ``stream`` through ``engine`` online: search, simulate clicks, feed them back.

    ``observer`` (e.g. :class:`simulators.hindsight.HindsightRecorder`) sees every decision
    after its latency was measured and before its feedback is applied.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 17]))
    n = len(stream)
    S = len(engine.policy.menu.strategies)
    ndcg = np.full(n, np.nan)
    recall = np.full(n, np.nan)
    n_cand = np.zeros(n)
    drawn = np.zeros(n)
    clicks = np.zeros(n)
    latency = np.zeros(n)
    depths = np.zeros((n, S), dtype=np.int64)
    ranking = np.full(n, "", dtype=object)
    plan_source = np.full(n, "", dtype=object)
    stage: dict[str, list[float]] = {}
    iterator: Any = stream
    if progress:
        from tqdm import tqdm

        iterator = tqdm(stream, desc=f"simulate {policy_name}", unit="q", leave=False)
    for i, q in enumerate(iterator):
        ts = START_TS + i * SECONDS_PER_QUERY
        t0 = time.perf_counter()
        d = engine.search(q.text, {}, k=k, ts=ts)
        latency[i] = (time.perf_counter() - t0) * 1e3
        if observer is not None:
            observer(d)
        ranking[i] = d.model_versions.get("ranking", "")
        plan_source[i] = d.model_versions.get("plan", "")
        for name, ms in d.timings_ms.items():
            stage.setdefault(name, []).append(ms)
        grades = np.array([q.relevant.get(int(r), 0) for r in d.page], dtype=np.float64)
        page = np.full((1, k), np.nan)
        page[0, : grades.size] = grades
        judged = np.array([list(q.relevant.values())], dtype=np.float64)
        ndcg[i] = ndcg_from_grades(page, judged, k)[0]
        if q.relevant:
            rel = np.fromiter(q.relevant.keys(), dtype=np.int64)
            recall[i] = np.isin(rel, d.candidates.items).mean()
        n_cand[i] = len(d.candidates)
        drawn[i] = d.plan.total_depth
        depths[i] = d.plan.depths
        if grades.size:
            clicked = click_model.simulate(np.nan_to_num(page, nan=-1.0), rng)[0][: grades.size]
        else:
            clicked = np.zeros(0, dtype=bool)
        clicks[i] = clicked.sum()
        items = [d.page_ids[j] for j in np.flatnonzero(clicked)]
        engine.feedback(Feedback.clicks(d.event_id, items, ts=ts + 5.0))
    return SessionResult(policy_name, [q.qtype for q in stream], ndcg, recall, n_cand, drawn, clicks,
                         latency, depths, tuple(engine.policy.menu.strategies),
                         {k_: np.asarray(v) for k_, v in stage.items()}, ranking, plan_source,
                         list(engine.incumbent.switches))
