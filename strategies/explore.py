"""Exploration generators: candidates no deterministic relevance strategy would surface.

Three modes (registry name ``"explore"``, param ``mode``):

``new``
    The most recent items: latest year first (``new_by = "year"``), or the rows added last
    (``"row"``), within the query's inferred category when there is one.
``popular``
    The most popular items of the query's inferred category (genre, decade, language, country
    recognized by the structured tagger), or of the whole catalog when none is recognized.
``random``
    Uniformly random items, seeded from the normalized query text and ``seed``, so a replay of
    the same log draws the same items.

Every mode returns at most ``max_k`` items whatever depth the plan asks for: exploration is
a small budget whose share, like any strategy's, is the policy's choice (a depth menu in
config). Clicks on these candidates are feedback the engine could not otherwise collect.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from ltrr.catalog import Catalog
from ltrr.contracts.strategy import CandidateGenerator
from ltrr.errors import NotFittedError
from ltrr.params import Params
from ltrr.text import normalize_query
from ltrr.types import QueryBatch, RetrievalResult
from strategies.structured.tagger import FieldTagger, TaggerConfig

__all__ = ["ExplorationGenerator", "ExplorationParams"]

CATEGORY_FIELDS = ("genre", "decade", "year", "language", "country")


class ExplorationParams(Params):
    """Hyperparameters of :class:`ExplorationGenerator`.

    Parameters
    ----------
    mode
        ``"new"``, ``"popular"`` or ``"random"``.
    max_k
        At most this many candidates per query, whatever the depth asked.
    category
        Restrict ``new`` and ``popular`` to the query's inferred category (when recognized).
    category_fields
        Which recognized fields define the category.
    new_by
        ``"year"``: latest year first (ties: later row); ``"row"``: last added rows first.
    seed
        Seed of the random mode (combined with the query text).
    genre_field, year_field, language_field, country_field
        Catalog field names of the category values.
    """

    mode: Literal["new", "popular", "random"] = "popular"
    max_k: int = Field(20, ge=1)
    category: bool = True
    category_fields: tuple[str, ...] = ("genre", "decade", "year", "language", "country")
    new_by: Literal["year", "row"] = "year"
    seed: int = Field(0, ge=0)
    genre_field: str = "genres"
    year_field: str = "year"
    language_field: str = "languages"
    country_field: str = "countries"

    @field_validator("category_fields")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [f for f in value if f not in CATEGORY_FIELDS]
        if bad:
            raise ValueError(f"must name fields among {', '.join(CATEGORY_FIELDS)}; unknown: {', '.join(bad)}")
        return value


class ExplorationGenerator(CandidateGenerator[ExplorationParams]):
    """New, category-popular or seeded-random items (registry name ``"explore"``).

    Learned state: ``popular_order_`` and ``new_order_`` (item rows, best first) and, when
    ``category`` is on, a genre/decade/year/language/country tagger (``tagger_``).
    """

    type_name = "explore"
    format_version = 1
    Params = ExplorationParams

    def __init__(self, params: ExplorationParams | dict[str, Any] | None = None, *, name: str | None = None):
        super().__init__(params, name=name)
        self.popular_order_: np.ndarray | None = None
        self.new_order_: np.ndarray | None = None
        self.tagger_: FieldTagger | None = None

    def _tagger_config(self) -> TaggerConfig:
        p = self.params
        return TaggerConfig(fields=p.category_fields, genre_field=p.genre_field, year_field=p.year_field,
                            language_field=p.language_field, country_field=p.country_field)

    # ------------------------------------------------------------------ building
    def _fit(self, catalog: Catalog) -> None:
        n = len(catalog)
        pop = np.asarray(catalog.popularity, dtype=np.float64)
        rows = np.arange(n)
        self.popular_order_ = np.lexsort((rows, -pop)).astype(np.int64)
        if self.params.new_by == "year":
            year = np.array([_year(f.get(self.params.year_field)) for f in catalog.fields], dtype=np.int64)
            self.new_order_ = np.lexsort((-rows, -year)).astype(np.int64)
        else:
            self.new_order_ = rows[::-1].astype(np.int64)
        self.tagger_ = (FieldTagger(self._tagger_config()).fit(catalog)
                        if self.params.category and self.params.mode != "random" else None)

    # ------------------------------------------------------------------ retrieval
    def category_mask(self, query: str) -> np.ndarray | None:
        """Items of ``query``'s inferred category (its best reading's slots, backing off one slot
        at a time while nothing matches), or None when no category is recognized."""
        if self.tagger_ is None:
            return None
        readings = self.tagger_.tag([query])[0]
        if not readings:
            return None
        vids = sorted({s.value_id for s in readings[0].slots})
        items = self.tagger_.items_
        while vids:
            counts = np.asarray(items[vids].sum(axis=0)).ravel()
            mask = counts >= len(vids)
            if mask.any():
                return mask
            vids = vids[:-1]
        return None

    def _orders(self) -> tuple[np.ndarray, np.ndarray]:
        """``popular_order_`` and ``new_order_``, or an error if neither fit nor load ran."""
        if self.popular_order_ is None or self.new_order_ is None:
            raise NotFittedError(f"{self.name} is not fitted: call fit(catalog) or load(directory) first")
        return self.popular_order_, self.new_order_

    def _retrieve(self, queries: QueryBatch, k: int) -> RetrievalResult:
        k_eff = min(k, self.params.max_k, self._orders()[0].size)
        out = RetrievalResult.empty(len(queries), k)
        for qi, text in enumerate(queries.texts):
            if not text.strip():
                continue
            picked = self._pick(text, k_eff)
            out.ids[qi, : picked.size] = picked
            # a rank-based score: exploration candidates carry no relevance estimate
            out.scores[qi, : picked.size] = 1.0 / np.arange(1, picked.size + 1, dtype=np.float32)
        return out

    def _pick(self, text: str, k: int) -> np.ndarray:
        mode = self.params.mode
        popular, new = self._orders()
        if mode == "random":
            return self._rng(text).choice(popular.size, size=k, replace=False).astype(np.int64)
        order = popular if mode == "popular" else new
        mask = self.category_mask(text)
        if mask is not None:
            order = order[mask[order]]
        return order[:k]

    def _rng(self, text: str) -> np.random.Generator:
        digest = hashlib.blake2b(normalize_query(text).encode("utf-8"), digest_size=8).digest()
        key = int.from_bytes(digest, "little")
        return np.random.default_rng(np.random.SeedSequence([self.params.seed, key]))

    def cost_ms(self, k: int) -> float:
        return 0.05 if self.params.mode == "random" else 0.2

    # ------------------------------------------------------------------ persistence
    def _save(self, directory: Path) -> None:
        popular, new = self._orders()
        np.save(directory / "popular_order.npy", popular, allow_pickle=False)
        np.save(directory / "new_order.npy", new, allow_pickle=False)
        if self.tagger_ is not None:
            self.tagger_.save(directory)

    def _load(self, directory: Path, manifest: dict[str, Any]) -> None:
        self.popular_order_ = np.load(directory / "popular_order.npy", allow_pickle=False)
        self.new_order_ = np.load(directory / "new_order.npy", allow_pickle=False)
        self.tagger_ = (FieldTagger(self._tagger_config()).load(directory)
                        if self.params.category and self.params.mode != "random" else None)


def _year(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1

