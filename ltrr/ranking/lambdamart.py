"""LightGBM LambdaMART ranker over provenance features.

Before it has been trained, the ranker orders candidates by reciprocal rank fusion of the
strategies' ranks (a strong unsupervised prior), so a fresh engine serves sensible pages. Saved as
LightGBM's own text model plus the JSON feature schema; no pickle.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
from pydantic import Field

from ltrr.errors import DataError, PersistenceError
from ltrr.features import FeatureSchema
from ltrr.params import Params, validate_params
from ltrr.store.persist import atomic_directory, read_manifest, write_json, write_manifest


class LambdaMARTParams(Params):
    n_estimators: int = Field(100, gt=0)
    learning_rate: float = Field(0.1, gt=0.0)
    num_leaves: int = Field(31, gt=1)
    min_data_in_leaf: int = Field(20, gt=0)
    #: RRF constant of the untrained prior
    rrf_k: float = Field(60.0, gt=0.0)
    seed: int = 0
    num_threads: int = Field(1, ge=0)


class LambdaMARTRanker:
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
        self._rank_cols = np.array([i for i, n in enumerate(schema.names) if n.endswith("_rank")], dtype=np.int64)

    @property
    def is_fitted(self) -> bool:
        return self.booster_ is not None

    def lgb_params(self) -> dict[str, Any]:
        p = self.params
        return {
            "objective": "lambdarank",
            "metric": "ndcg",
            "ndcg_eval_at": [10],
            "learning_rate": p.learning_rate,
            "num_leaves": p.num_leaves,
            "min_data_in_leaf": p.min_data_in_leaf,
            "seed": p.seed,
            "deterministic": True,
            "num_threads": p.num_threads,
            "verbosity": -1,
        }

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray,
            weight: np.ndarray | None = None) -> LambdaMARTRanker:
        """Train on rows ``X`` with graded labels ``y``; ``groups`` are the per-query row counts."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != len(self.schema.names):
            raise DataError(f"ranker expects {len(self.schema.names)} features, got shape {X.shape}")
        if not np.any(np.asarray(y) > 0):
            raise DataError("cannot train the ranker: the training rows contain no clicks")
        ds = lgb.Dataset(X, label=np.asarray(y, dtype=np.float32), group=np.asarray(groups),
                         weight=weight, feature_name=list(self.schema.names), free_raw_data=True,
                         params={"verbosity": -1})
        self.booster_ = lgb.train(self.lgb_params(), ds, num_boost_round=self.params.n_estimators)
        self.n_fits_ += 1
        text = self.booster_.model_to_string()
        self.version_ = f"lgbm-{self.n_fits_}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"
        return self

    def score(self, X: np.ndarray) -> np.ndarray:
        """Scores of rows ``X`` (higher is better)."""
        X = np.asarray(X, dtype=np.float32)
        if X.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        if self.booster_ is None:
            ranks = X[:, self._rank_cols]
            return np.nansum(1.0 / (self.params.rrf_k + ranks), axis=1)
        return self.booster_.predict(X, num_threads=self.params.num_threads)

    def save(self, directory: str | os.PathLike) -> None:
        with atomic_directory(directory) as tmp:
            if self.booster_ is not None:
                self.booster_.save_model(str(tmp / "model.txt"))
            write_json(tmp / "feature_schema.json", self.schema.to_dict())
            write_manifest(tmp, self.type_name, self.format_version, self.params.model_dump(),
                           version=self.version_, n_fits=self.n_fits_, fitted=self.booster_ is not None)

    @classmethod
    def load(cls, directory: str | os.PathLike, expected_schema: FeatureSchema | None = None) -> LambdaMARTRanker:
        import json

        directory = Path(directory)
        manifest = read_manifest(directory, cls.type_name, (cls.format_version,))
        schema = FeatureSchema.from_dict(json.loads((directory / "feature_schema.json").read_text()))
        if expected_schema is not None and schema.names != expected_schema.names:
            missing = [n for n in expected_schema.names if n not in schema.names]
            extra = [n for n in schema.names if n not in expected_schema.names]
            raise PersistenceError(
                f"{directory}: the ranker's feature schema differs from the engine's "
                f"(missing: {missing or 'none'}; unexpected: {extra or 'none'}; order differs: "
                f"{not missing and not extra})"
            )
        obj = cls(schema, manifest["params"])
        if manifest.get("fitted"):
            obj.booster_ = lgb.Booster(model_file=str(directory / "model.txt"))
        obj.version_ = manifest.get("version", obj.version_)
        obj.n_fits_ = int(manifest.get("n_fits", 0))
        return obj
