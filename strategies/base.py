"""The candidate-generator protocol.

Public methods validate and then call a private hook (``retrieve`` -> ``_retrieve``), so every
strategy handles bad ``k``, empty batches and blank queries the same way.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from ltrr.catalog import Catalog
from ltrr.errors import ConfigError, PersistenceError
from ltrr.params import Params, validate_params
from ltrr.store.persist import atomic_directory, read_manifest, write_manifest
from ltrr.types import PAD_ID, QueryBatch, RetrievalResult


class CandidateGenerator(ABC):
    """Base class of strategies.

    Subclasses set ``type_name`` (the registry name), ``Params`` (a frozen parameter model),
    ``format_version``, and implement ``_fit``, ``_retrieve``, ``_save`` and ``_load``.
    ``retrieve`` returns a :class:`RetrievalResult` whose rows are sorted best first and padded.
    """

    type_name: ClassVar[str] = "base"
    format_version: ClassVar[int] = 1
    Params: ClassVar[type[Params]] = Params
    #: True when the strategy learns from feedback (one instance must not serve two engines)
    stateful: ClassVar[bool] = False

    def __init__(self, params: Params | dict[str, Any] | None = None, *, name: str | None = None):
        if params is None or isinstance(params, dict):
            params = validate_params(self.Params, params, f"strategy {self.type_name!r}")
        self.params = params
        self.name = name or self.type_name
        self.n_items_ = 0

    # ----------------------------------------------------------------- protocol
    def fit(self, catalog: Catalog) -> Self:
        """Build the index over ``catalog`` (items addressed by row)."""
        self._fit(catalog)
        self.n_items_ = len(catalog)
        return self

    def retrieve(self, queries: QueryBatch | Sequence[str] | str, k: int) -> RetrievalResult:
        """Top-``k`` items per query, best first. Blank queries get an empty (padded) row."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ConfigError(f"The 'k' parameter of {self.name} must be an int in [0, inf). Got {k!r} instead.")
        batch = QueryBatch.of(queries)
        k = int(k)
        if len(batch) == 0 or k == 0:
            return RetrievalResult.empty(len(batch), k)
        blank = np.array([not t.strip() for t in batch.texts])
        if blank.all():
            return RetrievalResult.empty(len(batch), k)
        result = self._retrieve(batch, k)
        if result.ids.shape != (len(batch), k):
            raise AssertionError(f"{self.name} returned shape {result.ids.shape}, expected {(len(batch), k)}")
        if blank.any():
            result.ids[blank] = PAD_ID
            result.scores[blank] = -np.inf
        return result

    def cost_ms(self, k: int) -> float:
        """Expected milliseconds per query at depth ``k`` (a planning hint for the policy)."""
        return 0.1 + 0.001 * k

    def observe(self, query: str, shown: np.ndarray, clicked: np.ndarray, ts: float) -> None:  # noqa: B027
        """Learn from one feedback event (items as catalog rows). Default: nothing to learn."""

    def add_items(self, catalog: Catalog, new_rows: np.ndarray) -> None:
        """Index items appended to the catalog. Default: refit on the whole catalog."""
        self.fit(catalog)

    # ----------------------------------------------------------------- persistence
    def save(self, directory: str | os.PathLike) -> None:
        """Save atomically as a directory (manifest.json + the strategy's own open-format files)."""
        with atomic_directory(directory) as tmp:
            self._save(tmp)
            write_manifest(tmp, self.type_name, self.format_version,
                           self.params.model_dump(mode="json"), name=self.name,
                           n_items=self.n_items_, **self._manifest_extra())

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Self:
        manifest = read_manifest(directory, cls.type_name, (cls.format_version,))
        obj = cls(validate_params(cls.Params, manifest["params"], f"{directory}/manifest.json"),
                  name=manifest.get("name"))
        obj.n_items_ = int(manifest.get("n_items", 0))
        try:
            obj._load(Path(directory), manifest)
        except FileNotFoundError as exc:
            raise PersistenceError(f"{directory}: missing file {Path(exc.filename).name}") from None
        return obj

    def _manifest_extra(self) -> dict[str, Any]:
        return {}

    # ----------------------------------------------------------------- hooks
    @abstractmethod
    def _fit(self, catalog: Catalog) -> None: ...

    @abstractmethod
    def _retrieve(self, queries: QueryBatch, k: int) -> RetrievalResult: ...

    @abstractmethod
    def _save(self, directory: Path) -> None: ...

    @abstractmethod
    def _load(self, directory: Path, manifest: dict[str, Any]) -> None: ...
