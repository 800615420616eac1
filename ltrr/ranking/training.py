"""Training the ranker from clicks on the features that were logged when the page was served.

The rows are the decision events' own logged features (the event log stores every served
candidate's feature vector), never recomputed from today's catalog or click memory, so the model
learns from exactly what it will see at serving time (the Elasticsearch LTR plugin's and
Metarank's feature logging). Labels are clicks; position bias is removed as configured by
``LambdaMARTParams.debias`` (see :mod:`ltrr.ranking.debias`). When early stopping or the gate
against the fusion prior (``min_valid_gain``) is on, queries are split (seeded) into a training and
a held-out part. :class:`ClickRetrainSchedule` says when to retrain, counted in clicks.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ltrr.errors import DataError
from ltrr.features import FeatureSchema
from ltrr.offline.metrics import mean_ndcg_of_groups
from ltrr.ranking.debias import examination_from_clicks, ipw_weights
from ltrr.ranking.lambdamart import LambdaMARTRanker

log = logging.getLogger(__name__)

#: columns that may be NaN: provenance where a strategy did not find the item (``_score``,
#: ``_rank``) or did not run (also ``_found``, ``_rr``), and per-item estimates without a value
_EXPECTED_MISSING = ("_score", "_rank", "_found", "_rr", "_ctr", "_match")


class MissingFeatureWarning(UserWarning):
    """NaN values in features that should always be present (they are treated as missing)."""


@dataclass(frozen=True)
class ClickTrainingSet:
    """Rows of displayed results: logged features, click labels, display positions.

    ``groups`` are rows per query (event); ``keys`` identify (normalized query, item) pairs for
    the PBM fit; ``events`` are the source event ids.
    """

    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    positions: np.ndarray
    keys: np.ndarray
    events: tuple[str, ...]
    skipped: int = 0

    @property
    def n_queries(self) -> int:
        return int(self.groups.size)

    def subset(self, query_idx: np.ndarray) -> ClickTrainingSet:
        """The queries ``query_idx`` (in that order)."""
        query_idx = np.asarray(query_idx, dtype=np.int64)
        starts = np.r_[0, np.cumsum(self.groups)[:-1]]
        sizes = self.groups[query_idx]
        # row r of the subset = start of its query + offset inside the query
        offsets = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        rows = np.repeat(starts[query_idx], sizes) + offsets
        return ClickTrainingSet(self.X[rows], self.y[rows], self.groups[query_idx], self.positions[rows],
                                self.keys[rows], tuple(self.events[i] for i in query_idx))


def training_set(events: Iterable[tuple[Any, dict[str, float]]], schema: FeatureSchema) -> ClickTrainingSet:
    """Build the click training set from ``(logged event, {item id: reward})`` pairs.

    Events whose logged features were produced by another schema (width or fingerprint) are
    skipped and counted.
    """
    X: list[np.ndarray] = []
    y: list[np.ndarray] = []
    groups: list[int] = []
    pos: list[np.ndarray] = []
    keys: list[str] = []
    ids: list[str] = []
    skipped = 0
    fp = schema.fingerprint
    for ev, clicks in events:
        logged_fp = ev.model_versions.get("features")
        if (ev.features.ndim != 2 or ev.features.shape[1] != len(schema.names)
                or (logged_fp is not None and logged_fp != fp)):
            skipped += 1
            continue
        n = int(ev.page_idx.size)
        if n == 0:
            continue
        X.append(ev.features[ev.page_idx])
        y.append(np.fromiter((1.0 if clicks.get(i, 0) > 0 else 0.0 for i in ev.page_ids), np.float32, n))
        groups.append(n)
        pos.append(np.arange(n, dtype=np.int64))
        q = " ".join(ev.query.lower().split())
        keys.extend(f"{q}\x1f{i}" for i in ev.page_ids)
        ids.append(ev.event_id)
    if not groups:
        f = len(schema.names)
        return ClickTrainingSet(np.empty((0, f), np.float32), np.empty(0, np.float32), np.empty(0, np.int64),
                                np.empty(0, np.int64), np.empty(0, dtype=object), (), skipped)
    return ClickTrainingSet(np.concatenate(X).astype(np.float32), np.concatenate(y), np.asarray(groups),
                            np.concatenate(pos), np.asarray(keys, dtype=object), tuple(ids), skipped)


def count_unexpected_nan(X: np.ndarray, schema: FeatureSchema) -> dict[str, int]:
    """NaN count per feature that should always have a value (warned about, treated as missing)."""
    cols = [i for i, n in enumerate(schema.names) if not n.endswith(_EXPECTED_MISSING)]
    if not cols or X.size == 0:
        return {}
    counts = np.isnan(X[:, cols]).sum(axis=0)
    return {schema.names[c]: int(k) for c, k in zip(cols, counts, strict=True) if k}


def _progress_callback(total: int, desc: str) -> tuple[Callable[[Any], None], Any]:
    """A LightGBM callback that advances a tqdm bar by one tree per call, and the bar (typed
    ``Any``: neither library ships type information)."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="tree", leave=False)

    def callback(env: Any) -> None:
        bar.update(1)
        if env.evaluation_result_list:
            _, metric, value, _ = env.evaluation_result_list[0][:4]
            bar.set_postfix({metric: f"{value:.4f}"})
        if env.iteration + 1 >= env.end_iteration:
            bar.close()

    callback.order = 5  # type: ignore[attr-defined]  # LightGBM runs callbacks by their 'order' (early stopping: 30)
    return callback, bar


def fit_from_clicks(ranker: LambdaMARTRanker, data: ClickTrainingSet, *, progress: bool = False,
                    seed: int | None = None) -> dict[str, Any]:
    """Fit ``ranker`` on click data with its configured debiasing; returns a training report.

    Raises :class:`DataError` when there is no click. NaN in always-present features are
    counted in a :class:`MissingFeatureWarning` and left to LightGBM as missing values.
    """
    if data.n_queries == 0 or not np.any(data.y > 0):
        raise DataError("cannot train the ranker: the training log has no decision with a click "
                        f"({data.n_queries} usable events, {data.skipped} skipped for another feature schema)")
    p = ranker.params
    nan = count_unexpected_nan(data.X, ranker.schema)
    if nan:
        msg = (f"{sum(nan.values())} NaN feature values treated as missing: "
               + ", ".join(f"{k}={v}" for k, v in nan.items()))
        warnings.warn(msg, MissingFeatureWarning, stacklevel=2)
        log.warning(msg)
    rng = np.random.default_rng(np.random.SeedSequence([p.seed if seed is None else seed, 7]))
    order = rng.permutation(data.n_queries)
    # a held-out slice for early stopping and for the gate against the prior
    wants_valid = p.early_stopping_rounds > 0 or p.min_valid_gain is not None
    n_valid = int(round(p.valid_fraction * data.n_queries)) if wants_valid else 0
    if data.n_queries - n_valid < 1:
        n_valid = 0
    train = data.subset(np.sort(order[n_valid:])) if n_valid else data
    valid = data.subset(np.sort(order[:n_valid])) if n_valid else None
    if not np.any(train.y > 0):
        raise DataError("cannot train the ranker: no click in the training split")
    weight = position = None
    exam = None
    if p.debias == "position":
        position = train.positions
    elif p.debias == "ipw":
        exam = examination_from_clicks(data.positions, data.keys, data.y > 0, p.em_iterations)
        weight = ipw_weights(train.positions, train.y, exam, p.ipw_clip)
    callbacks = []
    bar = None
    if progress:
        cb, bar = _progress_callback(p.n_estimators, f"train ranker ({p.debias})")
        callbacks.append(cb)
    valid_arg = None if valid is None or not np.any(valid.y > 0) else (valid.X, valid.y, valid.groups)
    try:
        ranker.fit(train.X, train.y, train.groups, weight, position, valid=valid_arg, callbacks=callbacks)
    finally:
        if bar is not None:
            bar.close()
    report: dict[str, Any] = {
        "debias": p.debias, "queries": data.n_queries, "train_queries": train.n_queries,
        "valid_queries": 0 if valid is None else valid.n_queries, "rows": int(data.X.shape[0]),
        "clicks": int((data.y > 0).sum()), "skipped_events": data.skipped,
        "best_iteration": ranker.best_iteration_, "model_version": ranker.version_,
        "nan_features": nan, "schema": ranker.schema.fingerprint,
    }
    if exam is not None:
        report["examination"] = [round(float(v), 4) for v in exam]
    if valid is not None and valid_arg is not None and ranker.booster_ is not None:
        best = ranker.booster_.best_score.get("valid", {})
        report["valid_ndcg@10"] = float(best.get("ndcg@10", float("nan")))
        model = mean_ndcg_of_groups(ranker.score(valid.X), valid.y, valid.groups)
        prior = mean_ndcg_of_groups(ranker.prior(valid.X), valid.y, valid.groups)
        report["valid_click_ndcg@10"] = {"model": round(model, 5), "prior": round(prior, 5)}
        if p.min_valid_gain is not None and not model > prior + p.min_valid_gain:
            ranker.keep_prior()
            report["kept_prior"] = True
            report["model_version"] = ranker.version_
    return report


@dataclass
class ClickRetrainSchedule:
    """When to retrain the ranker, counted in clicks (the unit the ranker learns from).

    The first model is trained once ``first`` clicks have arrived; after each training the next
    one is due after ``growth`` times as many new clicks as the last interval, up to ``every``:
    50, 100, 200, 400, then every 500 clicks with the defaults (``growth = 1``: every ``first``). Early models see little data and
    are cheap, so retraining often then costs little; later a fixed interval in clicks keeps the
    cost of learning proportional to what there is to learn, whatever the click-through rate (a
    schedule in events retrains a navigational stream with one click a query and an
    informational one with three at very different data sizes).

    The engine calls :meth:`observe` with the number of clicked items of each feedback it
    applies; when it returns True it retrains and calls :meth:`trained`. ``to_dict`` /
    ``from_dict`` carry the state across snapshots.
    """

    first: int = 50
    every: int = 500
    growth: float = 2.0
    since: int = 0
    interval: int = 0

    def __post_init__(self) -> None:
        for name, value, low in (("first", self.first, 1), ("every", self.every, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"The '{name}' parameter of ClickRetrainSchedule must be an int in "
                                 f"[{low}, inf). Got {value!r} instead.")
        if not self.growth >= 1.0:
            raise ValueError(f"The 'growth' parameter of ClickRetrainSchedule must be a float in [1, inf). "
                             f"Got {self.growth!r} instead.")
        if self.interval == 0:
            self.interval = min(self.first, self.every)

    @property
    def due(self) -> bool:
        """Whether enough clicks arrived since the last training."""
        return self.since >= self.interval

    def observe(self, n_clicks: int) -> bool:
        """Count ``n_clicks`` new clicks; True when a retraining is due."""
        self.since += int(n_clicks)
        return self.due

    def trained(self) -> None:
        """A retraining happened: restart the count and widen the interval."""
        self.since = 0
        self.interval = min(self.every, max(self.interval, int(round(self.interval * self.growth))))

    def to_dict(self) -> dict[str, float]:
        return {"first": self.first, "every": self.every, "growth": self.growth, "since": self.since,
                "interval": self.interval}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClickRetrainSchedule:
        return cls(int(d["first"]), int(d["every"]), float(d["growth"]), int(d["since"]), int(d["interval"]))
