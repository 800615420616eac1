"""Prometheus text exposition (format 0.0.4), written by hand: counters, gauges, histograms.

The service needs a handful of metric families and no push gateway or multiprocess directory,
so a small thread-safe registry here is simpler than a dependency. Every sample carries the
worker's pid as a label: with several worker processes each scrape is answered by one of them.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Sequence

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LAG_BUCKETS = (0.1, 1.0, 10.0, 60.0, 300.0, 1800.0, 3600.0, 6 * 3600.0, 24 * 3600.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    return "{" + ",".join(f'{n}="{_escape(str(v))}"' for n, v in zip(names, values, strict=True)) + "}"


class _Family:
    kind = ""

    def __init__(self, name: str, help_: str, labels: Sequence[str] = ()):
        self.name, self.help, self.label_names = name, help_, tuple(labels)
        self._lock = threading.Lock()

    def _header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def render(self, extra: tuple[str, str]) -> list[str]:
        """The family's exposition lines, each sample labelled with ``extra`` too."""
        raise NotImplementedError


class Counter(_Family):
    kind = "counter"

    def __init__(self, name: str, help_: str, labels: Sequence[str] = ()):
        super().__init__(name, help_, labels)
        # a counter without labels is exported at 0 before its first increment
        self._values: dict[tuple[str, ...], float] = {} if self.label_names else {(): 0.0}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def declare(self, *labels: str) -> None:
        """Export ``labels`` at 0 until first incremented (a known series is visible at zero)."""
        with self._lock:
            self._values.setdefault(labels, 0.0)

    def value(self, *labels: str) -> float:
        with self._lock:
            return self._values.get(labels, 0.0)

    def render(self, extra: tuple[str, str]) -> list[str]:
        names = (*self.label_names, extra[0])
        with self._lock:
            items = sorted(self._values.items())
        return self._header() + [f"{self.name}{_labels(names, (*k, extra[1]))} {_fmt(v)}" for k, v in items]


class Gauge(_Family):
    """A value read at scrape time from a callable (no labels besides the worker)."""

    kind = "gauge"

    def __init__(self, name: str, help_: str, read: Callable[[], float]):
        super().__init__(name, help_)
        self._read = read

    def render(self, extra: tuple[str, str]) -> list[str]:
        try:
            v = float(self._read())
        except Exception:  # a gauge that cannot be read is left out of this scrape
            return []
        return self._header() + [f"{self.name}{_labels((extra[0],), (extra[1],))} {_fmt(v)}"]


class Histogram(_Family):
    kind = "histogram"

    def __init__(self, name: str, help_: str, labels: Sequence[str] = (), buckets: Sequence[float] = LATENCY_BUCKETS):
        super().__init__(name, help_, labels)
        self.buckets = tuple(sorted(buckets))
        # per-bucket counts, then sum, count; exported at 0 without labels, as counters are
        self._data: dict[tuple[str, ...], list[float]] = {} if self.label_names else {
            (): [0.0] * (len(self.buckets) + 2)}

    def observe(self, value: float, *labels: str) -> None:
        with self._lock:
            row = self._data.get(labels)
            if row is None:
                row = self._data[labels] = [0.0] * (len(self.buckets) + 2)
            for i, b in enumerate(self.buckets):
                if value <= b:
                    row[i] += 1
                    break
            row[-2] += value
            row[-1] += 1

    def count(self, *labels: str) -> float:
        with self._lock:
            row = self._data.get(labels)
            return row[-1] if row else 0.0

    def render(self, extra: tuple[str, str]) -> list[str]:
        names = (*self.label_names, extra[0])
        le_names = (*names, "le")
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._data.items())
        out = self._header()
        for key, row in items:
            lv = (*key, extra[1])
            cum = 0.0
            for b, c in zip(self.buckets, row, strict=False):
                cum += c
                out.append(f"{self.name}_bucket{_labels(le_names, (*lv, _fmt(b)))} {_fmt(cum)}")
            out.append(f"{self.name}_bucket{_labels(le_names, (*lv, '+Inf'))} {_fmt(row[-1])}")
            out.append(f"{self.name}_sum{_labels(names, lv)} {_fmt(row[-2])}")
            out.append(f"{self.name}_count{_labels(names, lv)} {_fmt(row[-1])}")
        return out


class ServeMetrics:
    """The service's metric families."""

    def __init__(self) -> None:
        self.requests = Counter("ltrr_http_requests_total", "HTTP requests by endpoint and status code.",
                                ("endpoint", "method", "status"))
        self.latency = Histogram("ltrr_http_request_duration_seconds",
                                 "HTTP request latency by endpoint (server side).", ("endpoint",))
        self.stages = Histogram("ltrr_search_stage_seconds",
                                "Search latency per engine stage (features, policy, strategy:<name>, union, ranker, logging).",
                                ("stage",))
        self.plans = Counter("ltrr_plans_total", "Searches by chosen plan (strategy=depth, ...).", ("plan",))
        self.strategies = Counter("ltrr_strategy_selected_total",
                                  "Searches in which the plan ran the strategy (depth > 0).", ("strategy",))
        self.feedback = Counter("ltrr_feedback_events_total",
                                "Feedback events received, by kind and whether they were new or duplicates.",
                                ("kind", "result"))
        self.feedback_lag = Histogram("ltrr_feedback_lag_seconds",
                                      "Time from the decision to its feedback arriving.", (), LAG_BUCKETS)
        self.policy_updates = Counter("ltrr_policy_updates_total",
                                      "Policy updates applied by this process (learner only).")
        self.journal_applied = Counter("ltrr_journal_entries_applied_total",
                                       "Feedback journal entries this process learned from.")
        self.apply_errors = Counter("ltrr_journal_apply_errors_total",
                                    "Failed attempts to apply a journal entry (retried, then refused).")
        self.journal_refused = Counter("ltrr_journal_refused_total",
                                       "Journal entries refused with a reason (not learned from; see /admin/status).")
        self.pruned = Counter("ltrr_events_pruned_total", "Decisions deleted by the event log's retention.")
        self.ranker_retrains = Counter("ltrr_ranker_retrains_total", "Online ranker retrainings.")
        self.snapshots = Counter("ltrr_snapshots_total", "State snapshots written.")
        self.reloads = Counter("ltrr_engine_reloads_total", "Engines swapped in (admin reload or following the learner).")
        self.gauges: list[Gauge] = []

    def gauge(self, name: str, help_: str, read: Callable[[], float]) -> None:
        self.gauges.append(Gauge(name, help_, read))

    def render(self) -> str:
        extra = ("pid", str(os.getpid()))
        lines: list[str] = []
        for fam in (self.requests, self.latency, self.stages, self.plans, self.strategies, self.feedback,
                    self.feedback_lag, self.policy_updates, self.journal_applied, self.apply_errors,
                    self.journal_refused, self.pruned, self.ranker_retrains, self.snapshots, self.reloads,
                    *self.gauges):
            lines += fam.render(extra)
        return "\n".join(lines) + "\n"
