"""LightGBM LambdaMART ranker over provenance features.

Before it has been trained, the ranker orders candidates by reciprocal rank fusion of the
strategies' ranks (a strong unsupervised prior), so a fresh engine serves sensible pages. Trained,
it keeps that prior and learns a correction on top of it: the boosting starts from
``init_score = prior_weight * rrf_k * RRF(ranks)`` (LightGBM ``init_score``; the prior is a feature
of the row, so serving adds it back exactly), the trees are monotone in every feature whose
direction is known (:func:`ltrr.features.monotone_directions`), and small leaves are forbidden —
so a few hundred noisy clicks move the fused order only where they agree. The click memory's
provenance and raw counts are withheld from the trees by default (``memory_in_trees``): its
evidence enters through its list's rank in the prior and its smoothed CTR, because those counts
also record where the engine showed an item before, a loop the trees would learn. Saved as LightGBM's own text model plus the JSON feature
schema; no pickle.

``fit`` is the plain learner: whatever rows, labels, per-row weights and display positions it is
given go straight into one ``lightgbm.Dataset`` and ``lightgbm.train`` (the withheld columns as
missing values) — with the same parameters it yields the very model plain LightGBM does. How clicks become those inputs (position-debiased
lambdarank, inverse-propensity weights, the held-out split) is :mod:`ltrr.ranking.training`.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import lightgbm as lgb
import numpy as np

# LightGBM's own handle on its C library (every 4.x release): its documented C API, called
# without the Python wrapper by predict_rows
from lightgbm.basic import _LIB, _safe_call
from pydantic import Field

from ltrr.contracts.ranker import Ranker
from ltrr.errors import DataError, PersistenceError
from ltrr.features import (
    FeatureSchema,
    click_exposure_columns,
    monotone_directions,
    reciprocal_ranks,
)
from ltrr.params import Params, validate_params
from ltrr.store.persist import atomic_directory, read_manifest, write_json, write_manifest

Debias = Literal["none", "position", "ipw"]


# LGBM_BoosterPredictForMat's constant arguments (C_API_DTYPE_FLOAT32/64, row-major, normal
# prediction, from the first tree), passed by value
_C_FLOAT32, _C_FLOAT64, _C_ROW_MAJOR = ctypes.c_int(0), ctypes.c_int(1), ctypes.c_int(1)
_C_NORMAL, _C_FROM_TREE_0 = ctypes.c_int(0), ctypes.c_int(0)


@functools.lru_cache(maxsize=8)
def _thread_param(num_threads: int) -> bytes:
    return f"num_threads={num_threads}".encode()


def predict_rows(booster: lgb.Booster, X: np.ndarray, num_iteration: int, num_threads: int) -> np.ndarray:
    """``booster.predict(X, num_iteration=..., num_threads=...)`` for a single-output model, the
    same numbers, through LightGBM's C function ``LGBM_BoosterPredictForMat`` called directly on
    ``X`` (float32 or float64, C-contiguous; others are converted): ``Booster.predict`` spends
    ~15 us per call around that function (a predictor object, three more C calls, a copy of its
    keyword arguments), a tenth of a 100-candidate request's prediction (docs/speed.md).
    ``num_iteration <= 0`` uses every tree."""
    if X.ndim != 2 or X.dtype not in (np.float32, np.float64):
        return np.asarray(booster.predict(X, num_iteration=num_iteration if num_iteration > 0 else None,
                                          num_threads=num_threads), dtype=np.float64)
    X = np.ascontiguousarray(X)
    out = np.empty(X.shape[0], dtype=np.float64)
    n_out = ctypes.c_int64(0)
    # addresses from __array_interface__ (C-level) rather than ndarray.ctypes.data_as (a Python
    # helper object and a cast per array, ~3 us each on a request's path)
    _safe_call(_LIB.LGBM_BoosterPredictForMat(
        booster._handle, ctypes.c_void_p(X.__array_interface__["data"][0]),
        _C_FLOAT64 if X.dtype == np.float64 else _C_FLOAT32,
        ctypes.c_int32(X.shape[0]), ctypes.c_int32(X.shape[1]), _C_ROW_MAJOR,
        _C_NORMAL, _C_FROM_TREE_0, ctypes.c_int(num_iteration),
        _thread_param(int(num_threads)), ctypes.byref(n_out), ctypes.c_void_p(out.__array_interface__["data"][0])))
    if n_out.value != out.size:
        raise DataError(f"LightGBM returned {n_out.value} predictions for {out.size} rows (a multi-output model?)")
    return out


MonotoneMethod = Literal["basic", "intermediate", "advanced"]


class LambdaMARTParams(Params):
    n_estimators: int = Field(100, gt=0)
    learning_rate: float = Field(0.1, gt=0.0)
    num_leaves: int = Field(31, gt=1)
    min_data_in_leaf: int = Field(20, gt=0)
    #: L2 regularization of leaf values (LightGBM ``lambda_l2``)
    lambda_l2: float = Field(0.0, ge=0.0)
    #: RRF constant of the untrained prior (schemas without a ``fused_rrf`` column)
    rrf_k: float = Field(60.0, gt=0.0)
    #: weight of the fusion prior the trees correct: the boosting starts from
    #: ``prior_weight * rrf_k * RRF(ranks)`` (about ``prior_weight`` per strategy that ranks the
    #: item first); 0 = plain LambdaMART from zero. 5 by default: on Cranfield (PBM
    #: informational, 3 seeds, docs/ranking.md) the ranker over BM25 + dense ends 0.006 above
    #: RRF with it and 0.002 below without it
    prior_weight: float = Field(5.0, ge=0.0)
    #: monotone constraints on the features whose direction is known
    #: (:func:`ltrr.features.monotone_directions`); without them the same ranker fell 0.006 below
    #: RRF on Cranfield PBM informational clicks
    monotone: bool = True
    #: LightGBM ``monotone_constraints_method``
    monotone_method: MonotoneMethod = "basic"
    seed: int = 0
    num_threads: int = Field(1, ge=0)
    #: how clicks are debiased for position: "none" (naive), "position" (LightGBM's
    #: position-debiased lambdarank, Dataset ``position``), "ipw" (inverse PBM examination
    #: probabilities estimated from the log by EM, as row weights)
    debias: Debias = "position"
    #: largest inverse-propensity weight (clipping bounds the variance of IPW)
    ipw_clip: float = Field(10.0, ge=1.0)
    #: EM iterations of the PBM fit behind "ipw"
    em_iterations: int = Field(50, gt=0)
    #: stop when held-out NDCG@10 has not improved for this many rounds (0 = never). Off by
    #: default: held-out *click* nDCG favours the order the clicks were logged under and stopped
    #: at 1-45 trees, below the true-nDCG of the full 100 (docs/ranking.md)
    early_stopping_rounds: int = Field(0, ge=0)
    #: fraction of queries held out for early stopping and the ``min_valid_gain`` gate
    valid_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    #: LightGBM's L2 regularization of the learned position biases ("position" debiasing)
    position_bias_regularization: float = Field(0.0, ge=0.0)
    #: keep serving the fusion prior unless the trained model's nDCG@10 on the held-out clicks
    #: beats the prior's by more than this margin (None = always take the trained model)
    min_valid_gain: float | None = None
    #: whether the trees may split on the click memory's exposure-dependent columns
    #: (:func:`ltrr.features.click_exposure_columns`: its provenance and raw counts). Off by
    #: default: the memory's evidence then enters through its list's rank in the fusion prior and
    #: its smoothed, examination-weighted CTR (monotone). Those counts say where the engine showed
    #: an item before as much as how good it is, and position debiasing of the current page
    #: cannot separate them: an engine serving a stable order trains on pages where they and the
    #: display position move together, and the trees learn to keep what was on top on top.
    #: Measured on Cranfield (docs/learning.md)
    memory_in_trees: bool = False


class LambdaMARTRanker(Ranker):
    """``fit(X, y, groups)`` / ``score(X)`` over a fixed :class:`FeatureSchema`."""

    type_name = "lambdamart"
    format_version = 1

    def __init__(self, schema: FeatureSchema, params: LambdaMARTParams | dict | None = None):
        if params is None or isinstance(params, dict):
            params = validate_params(LambdaMARTParams, params, "ranker 'lambdamart'")
        self.params = params
        self.schema = schema
        self.booster_: lgb.Booster | None = None
        self.version_ = "prior-rrf"
        self.n_fits_ = 0
        self.best_iteration_ = 0
        self._rank_cols = np.array([i for i, n in enumerate(schema.names) if n.endswith("_rank")
                                    and n != "best_rank"], dtype=np.int64)
        self._withheld = np.array([] if self.params.memory_in_trees else click_exposure_columns(schema),
                                  dtype=np.int64)
        # the booster (and iteration) whose trees were found not to split on a withheld column
        self._masking_checked: tuple[lgb.Booster, int] | None = None

    @property
    def is_fitted(self) -> bool:
        return self.booster_ is not None

    def lgb_params(self) -> dict[str, Any]:
        """The LightGBM parameters this ranker trains with (the parity benchmark reuses them)."""
        p = self.params
        return {
            "objective": "lambdarank",
            "metric": "ndcg",
            "ndcg_eval_at": [10],
            "learning_rate": p.learning_rate,
            "num_leaves": p.num_leaves,
            "min_data_in_leaf": p.min_data_in_leaf,
            "lambda_l2": p.lambda_l2,
            "lambdarank_position_bias_regularization": p.position_bias_regularization,
            "seed": p.seed,
            "deterministic": True,
            "num_threads": p.num_threads,
            "verbosity": -1,
            **({"monotone_constraints": monotone_directions(self.schema),
                "monotone_constraints_method": p.monotone_method} if p.monotone else {}),
        }

    def _prior_terms(self, X: np.ndarray) -> np.ndarray:
        """Each strategy's ``1 / (rrf_k + rank)`` (0 when not found), ``float64[n, S]``, from the
        ``_rank`` columns in float64: the same numbers :func:`ltrr.ranking.fusion.rrf_scores` sums."""
        return reciprocal_ranks(np.asarray(X).take(self._rank_cols, axis=1), self.params.rrf_k)

    def prior(self, X: np.ndarray) -> np.ndarray:
        """The reciprocal-rank-fusion score of rows ``X`` (float64)."""
        return np.add.reduce(self._prior_terms(X), axis=1)  # .sum(axis=1) without its Python layer

    def init_score(self, X: np.ndarray) -> np.ndarray | None:
        """Where the boosting starts (``prior_weight`` x the prior scaled so rank 1 of one
        strategy is about 1), or None when ``prior_weight`` is 0."""
        if self.params.prior_weight == 0.0:
            return None
        return self.params.prior_weight * self.params.rrf_k * self.prior(X)

    def tree_inputs(self, X: np.ndarray) -> np.ndarray:
        """Rows as the trees see them: ``float32``, the withheld click-memory columns missing
        (NaN: LightGBM never splits on a column without values). The prior reads the rows whole."""
        X = np.asarray(X, dtype=np.float32)
        if self._withheld.size == 0 or X.ndim != 2 or X.shape[1] != len(self.schema.names):
            return X
        X = X.copy()
        X[:, self._withheld] = np.nan
        return X

    def _trees_ignore_withheld(self) -> bool:
        """Whether no tree up to ``best_iteration_`` splits on a withheld column: a prediction
        then reads none of them, and ``score`` skips :meth:`tree_inputs`' masked copy (same
        numbers; a model trained by this ranker never splits on columns it saw as all NaN, a
        loaded or assigned one is checked once per booster)."""
        booster = self.booster_
        if self._withheld.size == 0:
            return True
        if booster is None:
            return False
        key = (booster, self.best_iteration_)
        checked = self._masking_checked
        if checked is not None and checked[0] is key[0] and checked[1] == key[1]:
            return True
        splits = booster.feature_importance("split", iteration=self.best_iteration_ or None)
        if splits.shape[0] != len(self.schema.names) or np.any(splits[self._withheld] > 0):
            return False
        self._masking_checked = key
        return True

    def _dataset(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray, weight: np.ndarray | None,
                 position: np.ndarray | None, reference: lgb.Dataset | None = None) -> lgb.Dataset:
        init = self.init_score(X)
        X = self.tree_inputs(X)
        if X.ndim != 2 or X.shape[1] != len(self.schema.names):
            raise DataError(f"ranker expects {len(self.schema.names)} features, got shape {X.shape}")
        groups = np.asarray(groups, dtype=np.int64)
        if groups.sum() != X.shape[0]:
            raise DataError(f"group sizes sum to {int(groups.sum())} but there are {X.shape[0]} rows")
        return lgb.Dataset(X, label=np.asarray(y, dtype=np.float32), group=groups,
                           weight=None if weight is None else np.asarray(weight, dtype=np.float64),
                           position=None if position is None else np.asarray(position, dtype=np.int32),
                           feature_name=list(self.schema.names), free_raw_data=True,
                           init_score=init, reference=reference, params={"verbosity": -1})

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray, weight: np.ndarray | None = None,
            position: np.ndarray | None = None, *,
            valid: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
            callbacks: Sequence[Callable[..., Any]] = ()) -> LambdaMARTRanker:
        """Train on rows ``X`` with graded labels ``y``; ``groups`` are the per-query row counts.

        ``weight`` are per-row weights, ``position`` the 0-based display position of each row
        (enables LightGBM's position-debiased lambdarank), ``valid = (X, y, groups)`` a held-out
        set for early stopping after ``params.early_stopping_rounds`` rounds without progress.
        """
        if not np.any(np.asarray(y) > 0):
            raise DataError("cannot train the ranker: the training rows contain no clicks")
        ds = self._dataset(X, y, groups, weight, position)
        cbs = list(callbacks)
        valid_sets = []
        if valid is not None and self.params.early_stopping_rounds > 0:
            valid_sets = [self._dataset(*valid, None, None, reference=ds)]
            cbs.append(lgb.early_stopping(self.params.early_stopping_rounds, first_metric_only=True,
                                          verbose=False))
        booster = lgb.train(self.lgb_params(), ds, num_boost_round=self.params.n_estimators,
                            valid_sets=valid_sets, valid_names=["valid"][: len(valid_sets)], callbacks=cbs)
        self.booster_ = booster
        self.best_iteration_ = int(booster.best_iteration or booster.current_iteration())
        self.n_fits_ += 1
        text = booster.model_to_string(num_iteration=self.best_iteration_)
        self.version_ = f"lgbm-{self.n_fits_}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"
        return self

    def trained(self, data: Any, *, progress: bool = False) -> tuple[LambdaMARTRanker, dict[str, Any]]:
        """A new ranker with these parameters fitted on click data (see
        :func:`ltrr.ranking.training.fit_from_clicks`); ``self`` keeps serving, untouched."""
        from ltrr.ranking.training import fit_from_clicks

        fresh = type(self)(self.schema, self.params)
        fresh.n_fits_ = self.n_fits_
        report = fit_from_clicks(fresh, data, progress=progress)
        return fresh, report

    def score(self, X: np.ndarray) -> np.ndarray:
        """Scores of rows ``X`` (higher is better)."""
        X = np.asarray(X, dtype=np.float32)
        if X.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        if self.booster_ is None:
            return self.prior(X)
        rows = X if self._trees_ignore_withheld() else self.tree_inputs(X)
        trees = predict_rows(self.booster_, rows, self.best_iteration_, self.params.num_threads)
        init = self.init_score(X)
        return trees if init is None else init + trees

    def keep_prior(self) -> None:
        """Drop the trained trees and serve the fusion prior again (a fit that did not beat it)."""
        self.booster_ = None
        self.best_iteration_ = 0
        self.version_ = "prior-rrf"

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-feature additive contributions ``float64[n, n_features + 1]`` (last column: bias).

        Trained: LightGBM's ``pred_contrib`` (TreeSHAP) plus, with a fusion prior, each strategy's
        prior term in its ``_rank`` column; rows sum to :meth:`score`. Untrained: each strategy's
        reciprocal-rank term sits in its ``_rank`` column, bias 0.
        """
        X = np.asarray(X, dtype=np.float32)
        out = np.zeros((X.shape[0], X.shape[1] + 1), dtype=np.float64)
        if X.shape[0] == 0:
            return out
        if self.booster_ is None:
            out[:, self._rank_cols] = self._prior_terms(X)
            return out
        out[:] = self.booster_.predict(self.tree_inputs(X), num_iteration=self.best_iteration_ or None, pred_contrib=True,
                                       num_threads=self.params.num_threads)
        if self.init_score(X) is not None:  # the prior the trees start from, per strategy
            out[:, self._rank_cols] += self.params.prior_weight * self.params.rrf_k * self._prior_terms(X)
        return out

    def save(self, directory: str | os.PathLike) -> None:
        with atomic_directory(directory) as tmp:
            if self.booster_ is not None:
                self.booster_.save_model(str(tmp / "model.txt"), num_iteration=self.best_iteration_ or None)
            write_json(tmp / "feature_schema.json", self.schema.to_dict())
            write_manifest(tmp, self.type_name, self.format_version, self.params.model_dump(),
                           version=self.version_, n_fits=self.n_fits_, fitted=self.booster_ is not None,
                           best_iteration=self.best_iteration_)

    @classmethod
    def load(cls, directory: str | os.PathLike, expected_schema: FeatureSchema | None = None) -> LambdaMARTRanker:
        """Load a saved ranker; refuse it when its feature schema is not ``expected_schema``."""
        directory = Path(directory)
        manifest = read_manifest(directory, cls.type_name, (cls.format_version,))
        schema = FeatureSchema.from_dict(json.loads((directory / "feature_schema.json").read_text()))
        if expected_schema is not None and (schema.names != expected_schema.names
                                            or schema.version != expected_schema.version):
            missing, extra = schema.diff(expected_schema)
            raise PersistenceError(
                f"{directory}: the ranker's feature schema (v{schema.version}) differs from the "
                f"engine's (v{expected_schema.version}) (missing: {missing or 'none'}; unexpected: "
                f"{extra or 'none'}; order differs: {not missing and not extra})"
            )
        obj = cls(schema, manifest["params"])
        if manifest.get("fitted"):
            obj.booster_ = lgb.Booster(model_file=str(directory / "model.txt"))
            obj.best_iteration_ = obj.booster_.current_iteration()
        obj.version_ = manifest.get("version", obj.version_)
        obj.n_fits_ = int(manifest.get("n_fits", 0))
        return obj
