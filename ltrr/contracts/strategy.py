"""The candidate-generator contract, and the optional capabilities a strategy declares.

Public methods validate and then call a private hook (``retrieve`` -> ``_retrieve``), so every
strategy handles bad ``k``, empty batches and blank queries the same way.

Optional capabilities are abstract base classes a strategy *inherits*; the engine asks
``isinstance(strategy, Capability)``, never ``getattr(strategy, "name", None)``. A capability's
methods are abstract, so a strategy that declares one and forgets a method cannot be built, and a
strategy that learns without declaring :class:`LearnsFromFeedback` is never fed clicks (and the
conformance suite in ``tests/strategies/test_conformance.py`` says so):

=========================  ================================================================
:class:`LearnsFromFeedback`  observes clicks; its learned state is in ``save``/``load``, so it is
                             written to every serving snapshot and reaches every follower; one
                             instance never serves two engines
:class:`Retrainable`         also rebuilds its model from the clicks it observed (a new instance,
                             built aside and swapped in whole)
:class:`QueryStatistics`     reports per-query signals for the policy's context features
:class:`ItemStatistics`      reports per-(query, item) click counts for ranker features
:class:`ItemScorer`          scores any catalog rows for a query (``<name>_match`` ranker feature)
:class:`TermWeighted`        exposes its per-(document, term) BM25 weights (reused by features)
=========================  ================================================================
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Self, TypeVar, cast

import numpy as np
import scipy.sparse as sp

from ltrr.catalog import Catalog
from ltrr.errors import ConfigError, NotFittedError, PersistenceError
from ltrr.params import Params as BaseParams
from ltrr.params import validate_params
from ltrr.store.persist import atomic_directory, read_manifest, write_manifest
from ltrr.types import PAD_ID, QueryBatch, RetrievalResult

P = TypeVar("P", bound=BaseParams)


class CandidateGenerator(ABC, Generic[P]):
    """Base class of strategies.

    Subclasses set ``type_name`` (the registry name), ``Params`` (a frozen parameter model),
    ``format_version``, and implement ``_fit``, ``_retrieve``, ``_save`` and ``_load``.
    ``retrieve`` returns a :class:`RetrievalResult` whose rows are sorted best first and padded.
    """

    type_name: ClassVar[str] = "base"
    format_version: ClassVar[int] = 1
    #: False for a strategy that answers (and saves) before any ``fit``, e.g. a click memory that
    #: learns from feedback alone; otherwise ``retrieve`` and ``save`` before ``fit``/``load``
    #: raise :class:`~ltrr.errors.NotFittedError`
    requires_fit: ClassVar[bool] = True
    Params: ClassVar[type[BaseParams]] = BaseParams
    params: P

    def __init__(self, params: P | dict[str, Any] | None = None, *, name: str | None = None):
        if params is None or isinstance(params, dict):
            params = cast(P, validate_params(self.Params, params, f"strategy {self.type_name!r}"))
        self.params = params
        self.name = name or self.type_name
        self.n_items_ = 0
        self.fitted_ = False

    # ----------------------------------------------------------------- protocol
    def fit(self, catalog: Catalog) -> Self:
        """Build the index over ``catalog`` (items addressed by row)."""
        self._fit(catalog)
        self.n_items_ = len(catalog)
        self.fitted_ = True
        return self

    def _check_ready(self, action: str) -> None:
        if self.requires_fit and not self.fitted_:
            raise NotFittedError(f"{self.name} is not fitted: call fit(catalog) or load(directory) "
                                 f"before {action}")

    def retrieve(self, queries: QueryBatch | Sequence[str] | str, k: int) -> RetrievalResult:
        """Top-``k`` items per query, best first. Blank queries get an empty (padded) row."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ConfigError(f"The 'k' parameter of {self.name} must be an int in [0, inf). Got {k!r} instead.")
        self._check_ready("retrieve")
        batch = QueryBatch.of(queries)
        k = int(k)
        if len(batch) == 0 or k == 0:
            return RetrievalResult.empty(len(batch), k)
        blank = [not t.strip() for t in batch.texts]  # a list: no numpy call per single query
        if all(blank):
            return RetrievalResult.empty(len(batch), k)
        result = self._retrieve(batch, k)
        if result.ids.shape != (len(batch), k):
            raise AssertionError(f"{self.name} returned shape {result.ids.shape}, expected {(len(batch), k)}")
        if any(blank):
            result.ids[blank] = PAD_ID
            result.scores[blank] = -np.inf
        return result

    def cost_ms(self, k: int) -> float:
        """Expected milliseconds per query at depth ``k`` (a planning hint for the policy)."""
        return 0.1 + 0.001 * k

    def add_items(self, catalog: Catalog, new_rows: np.ndarray) -> None:
        """Index items appended to the catalog. Default: refit on the whole catalog."""
        self.fit(catalog)

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release handles (database connections); the instance is not used afterwards."""

    def with_fresh_caches(self) -> Self:
        """An instance sharing this one's fitted index (read-only) with empty request caches
        (e.g. the dense strategy's query embeddings), so engines that share an index do not warm
        each other's caches; ``self`` when the strategy keeps none."""
        return self

    # ----------------------------------------------------------------- persistence
    def save(self, directory: str | os.PathLike) -> None:
        """Save atomically as a directory (manifest.json + the strategy's own open-format files)."""
        self._check_ready("save")
        with atomic_directory(directory) as tmp:
            self._save(tmp)
            write_manifest(tmp, self.type_name, self.format_version,
                           self.params.model_dump(mode="json"), name=self.name,
                           n_items=self.n_items_, **self._manifest_extra())

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Self:
        manifest = read_manifest(directory, cls.type_name, (cls.format_version,))
        obj = cls(cast(P, validate_params(cls.Params, manifest["params"], f"{directory}/manifest.json")),
                  name=manifest.get("name"))
        obj.n_items_ = int(manifest.get("n_items", 0))
        try:
            obj._load(Path(directory), manifest)
        except FileNotFoundError as exc:
            raise PersistenceError(f"{directory}: missing file {Path(exc.filename).name}") from None
        obj.fitted_ = True
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


# ---------------------------------------------------------------------------------- capabilities
class LearnsFromFeedback(ABC):
    """A strategy whose results depend on the clicks it observed.

    Its learned state must be part of :meth:`CandidateGenerator.save` / ``load`` (the
    conformance suite checks that a saved and reloaded instance answers identically), because
    the engine writes every such strategy into serving snapshots (``Engine.save_state``) and
    followers load it from there. One instance never serves two engines: compared runs get
    independent copies.
    """

    @abstractmethod
    def observe(self, query: str, shown: np.ndarray, clicked: np.ndarray, ts: float) -> None:
        """Learn from one feedback event: ``shown`` and ``clicked`` are catalog rows."""

    def learned_counts(self) -> dict[str, int]:
        """Sizes of the learned state for status pages (e.g. entries of the click memory)."""
        return {}


class Retrainable(LearnsFromFeedback):
    """A strategy that rebuilds its model from the clicks it observed (e.g. XR-Linear).

    The learner calls :meth:`retrained` outside the engine lock (the old instance keeps serving),
    then, under the lock, :meth:`hand_over` and swaps the reference.
    """

    @property
    @abstractmethod
    def n_observed(self) -> int:
        """Clicks observed since the model was last trained."""

    @abstractmethod
    def retrained(self, catalog: Catalog) -> Self:
        """A new instance trained on everything observed so far; ``self`` is left untouched."""

    @abstractmethod
    def hand_over(self, fresh: Self) -> None:
        """Move to ``fresh`` the clicks observed while it was being built."""


class QueryStatistics(ABC):
    """Reports signals about queries that become context features of the policy."""

    #: names of the signals :meth:`query_stats` returns (context feature names)
    query_stat_names: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def query_stats(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """``{signal name: float[n_queries]}`` for the names in ``query_stat_names``."""


class ItemStatistics(ABC):
    """Reports decayed (impressions, clicks) of (query, item) pairs: click-memory ranker features."""

    @abstractmethod
    def item_stats(self, query: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(impressions, clicks)``, each ``float[len(rows)]``, 0 for pairs never seen."""

    def smoothed_ctr(self, impressions: np.ndarray, clicks: np.ndarray) -> np.ndarray:
        """The click-through rate the ``_ctr`` ranker feature shows for these counts (default:
        clicks over impressions, NaN for a pair never shown); a strategy with a prior overrides."""
        imp = np.asarray(impressions, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(imp > 0, np.asarray(clicks, dtype=np.float64) / imp, np.nan)


class ItemScorer(ABC):
    """Scores any catalog rows for a query, not only the ones it retrieves."""

    @abstractmethod
    def score_items(self, queries: QueryBatch | Sequence[str] | str, rows: np.ndarray) -> np.ndarray:
        """``float[n_queries, n_rows]`` scores of ``rows`` (``int64[n_queries, n_rows]``)."""


@dataclass(frozen=True)
class TermWeights:
    """A lexical index's BM25 weight of every (document, term): ``weights`` is a sparse matrix
    ``[n_docs, n_terms]``, CSR or CSC (a term-major index hands over its postings as they are,
    without a transposed copy), ``vocabulary`` maps a token to its column, ``analyze`` tokenizes
    a query the way the index does, ``text_fields`` are the catalog fields indexed."""

    weights: sp.csr_matrix | sp.csc_matrix
    vocabulary: Mapping[str, int]
    analyze: Callable[[str], list[str]]
    text_fields: tuple[str, ...]


class TermWeighted(ABC):
    """A lexical strategy whose per-term document weights can be reused (the ``bm25_text`` ranker
    feature reads them instead of building a second index over the same fields)."""

    @abstractmethod
    def term_weights(self) -> TermWeights:
        """The fitted index's weights (shared, not copied: callers must not modify them)."""
