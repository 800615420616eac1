"""Reward models for the direct method and the doubly robust family, cross-fitted by default.

For foreign (action) logs the model follows Open Bandit Pipeline's ``RegressionModel``, so the
same inputs give the same numbers: one model per position, fitted on ``[context,
action_context[action]]`` (one-hot actions when the log has no action features), and with
``folds = K > 1`` cross-fitted: the rounds are split by ``sklearn.model_selection.KFold(K,
shuffle=True, random_state=seed)`` and each fold is predicted by the models fitted on the other
folds (Chernozhukov et al., 2018; Narita et al., 2020). Models: ``ridge`` (scikit-learn
``Ridge``), ``logistic`` (``LogisticRegression``, for 0/1 rewards), ``lightgbm`` (LightGBM's
classifier for 0/1 rewards, regressor otherwise); ``auto`` is logistic for 0/1 rewards and ridge
otherwise. Or pass estimated rewards from a file (``.npy``, rounds x actions [x positions]).

ltrr's own plan logs use a streaming, cross-fitted ridge model per plan
(:mod:`ltrr.offline.ope`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ltrr.errors import ConfigError, DataError
from ltrr.offline.formats.actionlog import ActionLog

MODELS = ("auto", "ridge", "logistic", "lightgbm", "none")
#: hyperparameters of each model (fixed, documented, overridable with --reward-param)
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "ridge": {"alpha": 1.0},
    "logistic": {"C": 1.0, "max_iter": 1000},
    "lightgbm": {"n_estimators": 100, "learning_rate": 0.1, "num_leaves": 31, "min_child_samples": 20},
}


@dataclass(frozen=True)
class RewardModelSpec:
    """Which reward model, how it is cross-fitted, or a file of estimated rewards."""

    kind: str = "auto"
    folds: int = 3
    seed: int = 0
    path: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in MODELS:
            raise ConfigError(f"The 'reward_model' parameter must be one of {', '.join(MODELS)}. Got {self.kind!r} instead.")
        if isinstance(self.folds, bool) or not isinstance(self.folds, int) or self.folds < 1:
            raise ConfigError(f"The 'folds' parameter must be an int in [1, inf). Got {self.folds!r} instead.")
        if self.kind in DEFAULT_PARAMS:
            unknown = sorted(set(self.params) - set(DEFAULT_PARAMS[self.kind]))
            if unknown:
                raise ConfigError(f"Unknown parameter {unknown[0]!r} of the {self.kind} reward model; "
                                  f"known: {', '.join(DEFAULT_PARAMS[self.kind])}")

    def resolved_kind(self, reward: np.ndarray) -> str:
        if self.kind != "auto":
            return self.kind
        return "logistic" if np.isin(reward, (0.0, 1.0)).all() else "ridge"

    def describe(self, reward: np.ndarray | None = None) -> dict[str, Any]:
        if self.path is not None:
            return {"kind": "file", "path": self.path}
        kind = self.resolved_kind(reward) if reward is not None else self.kind
        return {"kind": kind, "folds": self.folds, "seed": self.seed, "cross_fitted": self.folds > 1,
                "params": {**DEFAULT_PARAMS.get(kind, {}), **self.params}}


def parse_params(entries: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` strings as numbers where they parse."""
    out: dict[str, Any] = {}
    for e in entries:
        k, sep, v = e.partition("=")
        if not sep:
            raise ConfigError(f"--reward-param takes KEY=VALUE; got {e!r}")
        try:
            out[k.strip()] = int(v) if v.strip().lstrip("-").isdigit() else float(v)
        except ValueError:
            out[k.strip()] = v.strip()
    return out


def base_model(kind: str, seed: int, params: Mapping[str, Any], binary: bool) -> Any:
    """A fresh scikit-learn-compatible estimator (``Any``: scikit-learn and LightGBM ship no
    type information)."""
    p = {**DEFAULT_PARAMS[kind], **params}
    if kind == "ridge":
        from sklearn.linear_model import Ridge

        return Ridge(**p)
    if kind == "logistic":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(random_state=seed, **p)
    import lightgbm

    cls = lightgbm.LGBMClassifier if binary else lightgbm.LGBMRegressor
    return cls(random_state=seed, n_jobs=1, verbose=-1, **p)


def _features(log: ActionLog, rows: np.ndarray, action: np.ndarray, ac: np.ndarray) -> np.ndarray:
    return np.concatenate([log.context[rows], ac[action]], axis=1)


class Predictor(Protocol):
    """A fitted model: scikit-learn and LightGBM estimators (classifiers also have
    ``predict_proba``, whose positive-class column is used) and :class:`_Constant`."""

    def predict(self, X: np.ndarray) -> np.ndarray: ...


def _predict(model: Predictor, X: np.ndarray) -> np.ndarray:
    if hasattr(model, "predict_proba"):
        return model.predict_proba(X)[:, 1]
    return model.predict(X)


class _Constant:
    """The fallback for a position whose training rounds all have the same reward."""

    def __init__(self, value: float):
        self.value = float(value)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.full(X.shape[0], self.value)


def fit_predict(log: ActionLog, spec: RewardModelSpec) -> np.ndarray:
    """``float64[n, n_actions]``: each round's estimated reward of every action at its logged
    position (cross-fitted when ``spec.folds > 1``). BLAS is pinned to one thread while fitting:
    the solvers' small products only contend for the cores (measured: 2.5x slower on 2 busy
    cores with the default pool)."""
    if spec.path is not None:
        return load_estimated_rewards(spec.path, log)
    import sklearn.linear_model  # noqa: F401 - load scipy's BLAS before limiting its threads
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _fit_predict(log, spec)


def _fit_predict(log: ActionLog, spec: RewardModelSpec) -> np.ndarray:
    kind = spec.resolved_kind(log.reward)
    binary = bool(np.isin(log.reward, (0.0, 1.0)).all())
    if kind == "logistic" and not binary:
        raise ConfigError(f"The logistic reward model needs 0/1 rewards; {log.path} has rewards like "
                          f"{log.reward[~np.isin(log.reward, (0.0, 1.0))][:3].tolist()}; use ridge or lightgbm")
    n, A = len(log), log.n_actions
    ac = log.action_context if log.action_context is not None else np.eye(A, dtype=np.float64)
    q = np.zeros((n, A))
    if spec.folds == 1:
        splits = [(np.arange(n), np.arange(n))]
    else:
        from sklearn.model_selection import KFold

        if spec.folds > n:
            raise ConfigError(f"Cannot cross-fit {spec.folds} folds on {n} rounds")
        splits = list(KFold(n_splits=spec.folds, shuffle=True, random_state=spec.seed).split(log.context))
    for train, test in splits:
        for pos in range(log.len_list):
            tr = train[log.position[train] == pos]
            te = test[log.position[test] == pos]
            if te.size == 0:
                continue
            if tr.size == 0:
                raise DataError(f"{log.path}: no training rounds at position {pos} outside a fold; use fewer folds")
            y = log.reward[tr]
            if kind in ("logistic", "lightgbm") and binary and np.unique(y).size < 2:
                model = _Constant(y[0])
            else:
                model = base_model(kind, spec.seed, spec.params, binary)
                model.fit(_features(log, tr, log.action[tr], ac), y)
            for a in range(A):
                q[te, a] = _predict(model, _features(log, te, np.full(te.size, a), ac))
    return q


def load_estimated_rewards(path: str | os.PathLike, log: ActionLog) -> np.ndarray:
    """Estimated rewards from a ``.npy`` file, ``[n, A]`` or OBP's ``[n, A, L]``, at each round's
    logged position."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such estimated-rewards file")
    try:
        q = np.load(p, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"{p}: not a .npy array of estimated rewards ({exc})") from None
    n, A = len(log), log.n_actions
    if q.ndim == 2:
        q = q[:, :, None]
    if q.ndim != 3 or q.shape[0] != n or q.shape[1] != A or q.shape[2] not in (1, log.len_list):
        raise DataError(f"{p}: estimated rewards have shape {q.shape}; the log needs ({n}, {A}) or "
                        f"({n}, {A}, {log.len_list}) (rounds, actions[, positions])")
    pos = log.position if q.shape[2] > 1 else np.zeros(n, dtype=np.int64)
    out = np.asarray(q[np.arange(n), :, pos], dtype=np.float64)
    if not np.isfinite(out).all():
        i = int(np.flatnonzero(~np.isfinite(out).all(axis=1))[0])
        raise DataError(f"{p}: estimated rewards of round {i} are not finite")
    return out
