"""The ranker contract: scores a candidate union's feature rows, learns from clicks aside.

A ranker never changes while it serves: :meth:`Ranker.trained` returns a *new* ranker fitted on
click data (the learner builds it outside the engine lock and swaps the reference whole), so a
request scores with one model and logs that model's version.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

if TYPE_CHECKING:
    from ltrr.features import FeatureSchema
    from ltrr.ranking.training import ClickTrainingSet


class Ranker(ABC):
    """Scores rows of a fixed :class:`~ltrr.features.FeatureSchema`; higher is better.

    Subclasses set ``type_name`` (the registry name) and are built as ``cls(schema, params)``.
    """

    type_name: ClassVar[str] = "base"
    #: the feature layout the ranker scores
    schema: FeatureSchema
    #: identifies the model that scored a page (logged with every decision)
    version_: str

    def __init__(self, schema: FeatureSchema, params: Any = None) -> None:
        """A ranker over ``schema`` with ``params`` (its own parameter model, or a mapping of it)."""
        self.schema = schema
        self.version_ = "untrained"

    @property
    @abstractmethod
    def is_fitted(self) -> bool:
        """False while the ranker serves its untrained prior."""

    @abstractmethod
    def score(self, X: np.ndarray) -> np.ndarray:
        """``float64[n]`` scores of rows ``X`` (``float32[n, n_features]``)."""

    @abstractmethod
    def contributions(self, X: np.ndarray) -> np.ndarray:
        """``float64[n, n_features + 1]`` per-feature additive contributions (last column: bias)."""

    @abstractmethod
    def trained(self, data: ClickTrainingSet, *, progress: bool = False) -> tuple[Self, dict[str, Any]]:
        """A new ranker of the same type and parameters fitted on ``data``, and its training
        report; ``self`` is left untouched (it keeps serving meanwhile)."""

    @abstractmethod
    def save(self, directory: str | os.PathLike) -> None:
        """Save atomically as a directory in open formats."""

    @classmethod
    @abstractmethod
    def load(cls, directory: str | os.PathLike, expected_schema: FeatureSchema | None = None) -> Self:
        """Load a saved ranker; refuse one whose feature schema is not ``expected_schema``."""
