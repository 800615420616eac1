"""Simulated click logs: run a policy on the movie query stream and write what it did.

An engine built from a config serves a seeded :class:`simulators.movies.MovieQueryGenerator`
stream; a click model (PBM by default) clicks on each page from the queries' graded relevance.
Every search becomes a log record with plan, propensities and ``x`` (an ltrr log), or only
query/shown/clicks (``foreign=True``). With ``learn=True`` clicks are fed back, so the policy,
memory and ranker learn online as they would in production; with ``learn=False`` the engine is
frozen, which makes the environment stationary (off-policy evaluation ground truth).
Simulators are imported here only, never by the serving path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ltrr import progress
from ltrr.config import EngineConfig
from ltrr.engine import Engine
from ltrr.offline.logs import LogRecord, LogWriter, record_from_decision
from ltrr.reward import RewardSpec
from ltrr.types import Feedback

START_TS = 1_735_689_600.0
SECONDS_PER_QUERY = 37.0


@dataclass(frozen=True)
class SimLogResult:
    """What was written, plus per-record traces the log itself does not hold."""

    path: Path
    records: int
    qtypes: tuple[str, ...]
    reward: np.ndarray
    expected_click: np.ndarray  # P(at least one click) on the page, from the click model


def simulate_log(engine: Engine, queries: Sequence, out: str | os.PathLike, *, seed: int = 0,
                 click_model: str = "pbm", preset: str = "navigational", learn: bool = True,
                 foreign: bool = False, start_ts: float = START_TS, k: int | None = None) -> SimLogResult:
    """Serve ``queries`` (``SimQuery`` objects) with ``engine`` and write the click log ``out``."""
    from ltrr import registry

    cm = registry.get("click_model", click_model)(preset=preset)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 29]))
    reward = RewardSpec.from_config(engine.config)
    k = engine.config.page_size if k is None else k
    rewards = np.zeros(len(queries))
    p_click = np.zeros(len(queries))
    with LogWriter(out, engine.policy.menu.strategies) as writer:
        for i, q in enumerate(progress.bar(queries, len(queries), "log simulate", " searches")):
            ts = start_ts + i * SECONDS_PER_QUERY
            d = engine.search(q.text, {"qtype": q.qtype, "qid": q.qid}, k=k, ts=ts)
            grades = np.full((1, k), -1.0)
            grades[0, : d.page.size] = [q.relevant.get(int(r), 0) for r in d.page]
            if d.page.size:
                clicked = cm.simulate(grades, rng)[0][: d.page.size]
                probs = cm.click_probabilities(grades)[0][: d.page.size]
                p_click[i] = 1.0 - float(np.prod(1.0 - probs))
            else:
                clicked = np.zeros(0, dtype=bool)
            ids = [d.page_ids[j] for j in np.flatnonzero(clicked)]
            rec = record_from_decision(d, ids, reward, offset=i)
            if foreign:
                rec = replace(rec, plan=None, x=None, reward=None, strategy_rewards=None)
            rewards[i] = rec.reward if rec.reward is not None else float(bool(ids))
            writer.write(rec)
            if learn:
                engine.feedback(Feedback.clicks(d.event_id, ids, ts=ts + 5.0))
    return SimLogResult(Path(out), len(queries), tuple(q.qtype for q in queries), rewards, p_click)


def movie_stream(engine: Engine, n: int, *, pool_size: int = 500, seed: int = 0) -> list:
    """A seeded Zipf stream of ``n`` movie queries over the engine's catalog."""
    from simulators.movies import MovieQueryGenerator

    return MovieQueryGenerator(engine.catalog, seed=0).stream(n, pool_size, seed=seed)


def generate_log(config: EngineConfig, out: str | os.PathLike, n: int, *, pool_size: int = 500,
                 seed: int = 0, learn: bool = True, foreign: bool = False,
                 click_model: str = "pbm", preset: str = "navigational") -> SimLogResult:
    """Build an engine from ``config`` and write a simulated log of ``n`` searches to ``out``
    (event ids seeded: the same seed writes the same log)."""
    from simulators.session import deterministic

    engine = Engine.from_config(deterministic(config))
    try:
        stream = movie_stream(engine, n, pool_size=pool_size, seed=seed)
        return simulate_log(engine, stream, out, seed=seed, learn=learn, foreign=foreign,
                            click_model=click_model, preset=preset)
    finally:
        engine.close()


__all__ = ["LogRecord", "SimLogResult", "generate_log", "movie_stream", "simulate_log"]
