"""Replay of a click log through the Engine, with checkpoints and metrics over time.

The loop body is :meth:`ltrr.learner.Learner.learn_from_record`; this module streams the records in
file order (logs are written in time order; a record going back in time is reported), writes
windowed metrics to ``DIR/metrics.jsonl`` and checkpoints every ``checkpoint_every`` records.

A checkpoint is one atomic directory ``DIR/checkpoint`` holding the saved engine and
``state.json``: records consumed (and the JSONL byte offset), the engine's loop state (random
streams, retrain counter), the event log's last sequence number, the metric accumulators, the
reader's problem report and the byte length of ``metrics.jsonl``. Resuming loads the engine,
rewinds the event log and ``metrics.jsonl`` to the checkpoint and continues from the recorded
offset, so an interrupted replay ends in the same state as an uninterrupted one.

Metrics, per window of ``window`` records (and cumulative):

* full-information (known for every record, since strategies are deterministic): mean reward of
  the plan the policy chose, of the best menu plan in hindsight per record, recall of clicked
  items by the chosen plan's candidates, cumulative reward, cumulative regret against the
  per-record best plan and against the best fixed plan in hindsight (so far);
* bandit-feedback (records with a logged plan and propensities): logged reward, and the IPS and
  SNIPS estimates of the replayed policy's value from the logged rewards.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ltrr.config import EngineConfig
from ltrr.engine import Engine
from ltrr.learner import LogStep
from ltrr.offline.logs import LogReader, LogRecord, LogReport, Position
from ltrr.store.engine_dir import loop_state, restore_loop_state
from ltrr.store.persist import atomic_directory, write_json

STATE_VERSION = 3


@dataclass
class ReplayMetrics:
    """Running sums of the replay metrics; ``window_*`` reset every window."""

    strategies: tuple[str, ...]
    plans: list[list[int]]
    records: int = 0
    cum_reward: float = 0.0
    cum_best: float = 0.0
    cum_full: int = 0
    cum_bandit: int = 0
    cum_ips: float = 0.0
    cum_w: float = 0.0
    cum_logged: float = 0.0
    cum_plan: list[float] = field(default_factory=list)
    window: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.window:
            self.reset_window()
        if not self.cum_plan:
            self.cum_plan = [0.0] * len(self.plans)

    def reset_window(self) -> None:
        self.window = {"n": 0, "full": 0, "bandit": 0, "reward": 0.0, "best": 0.0, "recall_sum": 0.0,
                       "recall_n": 0, "logged": 0.0, "ips": 0.0, "w": 0.0,
                       "share": {}, "first_ts": None, "last_ts": None}

    def add(self, rec: LogRecord, step: LogStep) -> None:
        w = self.window
        chosen_r = float(step.plan_rewards[step.chosen]) if step.chosen >= 0 else 0.0
        best = float(step.plan_rewards.max())
        self.records += 1
        self.cum_reward += chosen_r
        self.cum_best += best
        self.cum_plan = (np.asarray(self.cum_plan) + step.plan_rewards).tolist()
        w["n"] += 1
        w["reward"] += chosen_r
        w["best"] += best
        if step.n_clicks and step.chosen >= 0:
            w["recall_sum"] += float(step.plan_recall[step.chosen])
            w["recall_n"] += 1
        if step.mode == "bandit-feedback":
            self.cum_bandit += 1
            w["bandit"] += 1
            wt = float(step.ips_weight or 0.0)
            logged = step.logged_reward
            assert logged is not None, "the learner logs a reward with every bandit-feedback step"
            w["logged"] += logged
            w["ips"] += wt * logged
            w["w"] += wt
            self.cum_logged += logged
            self.cum_ips += wt * logged
            self.cum_w += wt
        else:
            self.cum_full += 1
            w["full"] += 1
        qtype = str(rec.context.get("qtype", rec.context.get("query_type", "all")))
        share = w["share"].setdefault(qtype, [0, [0] * len(self.strategies)])
        share[0] += 1
        if step.chosen >= 0:
            for s, d in enumerate(self.plans[step.chosen]):
                share[1][s] += int(d > 0)
        w["first_ts"] = rec.ts if w["first_ts"] is None else w["first_ts"]
        w["last_ts"] = rec.ts

    def line(self) -> dict[str, Any]:
        """The metrics line of the current window."""
        w = self.window
        n = max(w["n"], 1)
        best_fixed = int(np.argmax(self.cum_plan))
        mode = ("bandit-feedback" if w["full"] == 0 else "full-information" if w["bandit"] == 0
                else "mixed")
        out: dict[str, Any] = {
            "records": self.records, "window_records": w["n"], "policy_learning": mode,
            "first_ts": w["first_ts"], "last_ts": w["last_ts"],
            "full_information": {
                "chosen_plan_reward": w["reward"] / n,
                "best_plan_in_hindsight_reward": w["best"] / n,
                "clicked_recall_of_chosen_plan": (w["recall_sum"] / w["recall_n"]) if w["recall_n"] else None,
                "cumulative_reward": self.cum_reward,
                "cumulative_regret": self.cum_best - self.cum_reward,
                "best_fixed_plan": dict(zip(self.strategies, self.plans[best_fixed], strict=True)),
                "cumulative_regret_vs_best_fixed_plan": self.cum_plan[best_fixed] - self.cum_reward,
            },
            "strategy_share": {
                qt: {s: c / max(tot, 1) for s, c in zip(self.strategies, counts, strict=True)}
                for qt, (tot, counts) in sorted(w["share"].items())},
        }
        if w["bandit"]:
            out["bandit_feedback"] = {
                "records": w["bandit"],
                "logged_reward": w["logged"] / w["bandit"],
                "ips_value_of_replayed_policy": w["ips"] / w["bandit"],
                "snips_value_of_replayed_policy": (w["ips"] / w["w"]) if w["w"] > 0 else None,
                "cumulative_logged_reward": self.cum_logged,
            }
        return out

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("records", "cum_reward", "cum_best", "cum_full", "cum_bandit",
                                              "cum_ips", "cum_w", "cum_logged", "cum_plan", "window")}

    def restore(self, d: dict[str, Any]) -> None:
        for k, v in d.items():
            setattr(self, k, v)


@dataclass(frozen=True)
class ReplayResult:
    """Summary of a finished replay."""

    out: Path
    records: int
    seconds: float
    resumed_from: int
    report: LogReport
    metrics: dict[str, Any]

    @property
    def records_per_s(self) -> float:
        return (self.records - self.resumed_from) / self.seconds if self.seconds > 0 else float("nan")


def _records_with_progress(it: Iterator[LogRecord], reader: LogReader, enabled: bool,
                           initial: int) -> Iterator[LogRecord]:
    if not enabled:
        yield from it
        return
    from tqdm import tqdm

    with tqdm(desc="replay", unit=" events", initial=initial, smoothing=0.05, delay=2.0) as bar:
        last = initial
        for rec in it:
            yield rec
            now = reader.position.records
            bar.update(now - last)
            last = now


def replay(config: EngineConfig, log: str | os.PathLike, out: str | os.PathLike, *,
           checkpoint_every: int = 10_000, window: int = 1_000, strict: bool = False,
           progress: bool = True, stop_after: int | None = None, train_ranker: bool = True) -> ReplayResult:
    """Stream ``log`` through an engine built from ``config``, resuming from ``out`` if a
    checkpoint is there. ``stop_after`` ends after that many records in total (tests);
    ``train_ranker=False`` replays only the retrieval decision and the memory (faster)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    events_path = str(out / "events.sqlite")
    ckpt = out / "checkpoint"
    metrics_path = out / "metrics.jsonl"
    reader = LogReader(log, strict=strict)
    state = _read_state(ckpt)
    if state is not None:
        if state["log"] != str(Path(log).resolve()):
            from ltrr.errors import DataError

            raise DataError(f"{out}: the checkpoint belongs to a replay of {state['log']}, not {log}; "
                            "use another --out directory")
        engine = Engine.load(ckpt / "engine", events_path=events_path)
        engine.events.delete_after(int(state["event_seq"]))
        restore_loop_state(engine, state["engine"])
        start = Position(int(state["records"]), int(state["byte"]))
        reader.report = _report_from(state["report"])
        with metrics_path.open("r+b") as raw:
            raw.truncate(int(state["metrics_bytes"]))
    else:
        if (out / "events.sqlite").exists():
            for suffix in ("", "-wal", "-shm"):
                Path(events_path + suffix).unlink(missing_ok=True)
        cfg = config.model_copy(update={"store": config.store.model_copy(update={"events_path": events_path})})
        engine = Engine.from_config(cfg)
        start = Position()
        metrics_path.write_text("")
    menu = engine.policy.menu
    metrics = ReplayMetrics(menu.strategies, menu.plans.tolist())
    if state is not None:
        metrics.restore(state["metrics"])
    resumed_from = start.records
    t0 = time.perf_counter()
    fh = metrics_path.open("a", encoding="utf-8")
    try:
        since_ckpt = 0
        for rec in _records_with_progress(reader.records(start), reader, progress, start.records):
            step = engine.learner.learn_from_record(rec, train_ranker=train_ranker)
            metrics.add(rec, step)
            if metrics.window["n"] >= window:
                fh.write(json.dumps(metrics.line()) + "\n")
                metrics.reset_window()
            since_ckpt += 1
            if checkpoint_every and since_ckpt >= checkpoint_every:
                _checkpoint(engine, reader, metrics, fh, ckpt, log)
                since_ckpt = 0
            if stop_after is not None and reader.position.records >= stop_after:
                break
        if metrics.window["n"]:
            fh.write(json.dumps(metrics.line()) + "\n")
            metrics.reset_window()
    finally:
        fh.close()
    reader.report.check_nonempty()
    seconds = time.perf_counter() - t0
    engine.save(out / "engine")
    summary = {"records": reader.position.records, "usable": reader.report.valid,
               "full_information_records": metrics.cum_full, "bandit_feedback_records": metrics.cum_bandit,
               "cumulative_reward": metrics.cum_reward, "cumulative_best_in_hindsight": metrics.cum_best,
               "cumulative_regret": metrics.cum_best - metrics.cum_reward,
               "best_fixed_plan": dict(zip(menu.strategies, menu.plans[int(np.argmax(metrics.cum_plan))].tolist(),
                                           strict=True)),
               "cumulative_regret_vs_best_fixed_plan": max(metrics.cum_plan) - metrics.cum_reward,
               "seconds": seconds, "records_per_s": (reader.position.records - resumed_from) / max(seconds, 1e-9),
               "resumed_from": resumed_from, "ranker_trained": train_ranker, "log": reader.report.to_dict(),
               "notes": ("full_information numbers compare every menu plan on every record (strategies "
                         "are deterministic); bandit_feedback numbers use only the logged plan, "
                         "weighted by its logged propensity.")}
    write_json(out / "summary.json", summary)
    engine.close()
    return ReplayResult(out, reader.position.records, seconds, resumed_from, reader.report, summary)


def _checkpoint(engine: Engine, reader: LogReader, metrics: ReplayMetrics, fh: TextIO, ckpt: Path,
                log: str | os.PathLike) -> None:
    fh.flush()
    os.fsync(fh.fileno())
    pos = reader.position
    state = {"version": STATE_VERSION, "log": str(Path(log).resolve()), "records": pos.records,
             "byte": pos.byte, "engine": loop_state(engine), "event_seq": engine.events.last_seq(),
             "metrics": metrics.to_json(), "report": reader.report.to_dict() | {
                 "counts": reader.report.counts, "all_examples": reader.report.examples},
             "metrics_bytes": fh.tell()}
    with atomic_directory(ckpt) as tmp:
        engine.save(tmp / "engine")
        write_json(tmp / "state.json", state)


def _read_state(ckpt: Path) -> dict[str, Any] | None:
    if not (ckpt / "state.json").exists():
        # a kill between the two renames of an atomic checkpoint leaves the previous complete
        # checkpoint under its temporary "old" name: put it back
        olds = sorted(ckpt.parent.glob(f".{ckpt.name}.old-*"), key=lambda p: p.stat().st_mtime)
        if not olds or not (olds[-1] / "state.json").exists():
            return None
        if ckpt.exists():
            import shutil

            shutil.rmtree(ckpt)
        os.replace(olds[-1], ckpt)
    f = ckpt / "state.json"
    state = json.loads(f.read_text())
    if state.get("version") != STATE_VERSION:
        from ltrr.errors import PersistenceError

        raise PersistenceError(f"{f}: checkpoint version {state.get('version')}, expected {STATE_VERSION}")
    return state


def _report_from(d: dict[str, Any]) -> LogReport:
    r = LogReport(d["path"], int(d["records"]), int(d["valid"]))
    r.counts.update(d["counts"])
    r.examples.update(d["all_examples"])
    return r


def read_metrics(out: str | os.PathLike) -> list[dict[str, Any]]:
    """The lines of ``DIR/metrics.jsonl``."""
    path = Path(out) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def final_state(out: str | os.PathLike) -> dict[str, Any]:
    """Arrays and counts that identify a replay's end state (used to compare runs)."""
    out = Path(out)
    with np.load(out / "engine" / "policy" / "state.npz", allow_pickle=False) as z:
        policy = {k: z[k] for k in z.files}
    return {"policy": policy, "metrics": read_metrics(out),
            "summary": json.loads((out / "summary.json").read_text())}
