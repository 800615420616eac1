"""Structured search: the query's top interpretations run as fielded retrieval, merged.

Each interpretation (see :mod:`strategies.structured.tagger`) is a conjunction of field = value
slots. Its matches are the items every slot's value holds, found for all interpretations of a
query at once as one sparse product ``A @ items`` (``A`` marks each interpretation's values) and
a comparison with the slot count. A match scores

    likelihood(interpretation) * (1 + popularity_weight * prior(item) + role_weight * role(item))

where ``prior`` is ``log1p(popularity)`` scaled to [0, 1] and ``role`` the mean role weight of
the interpretation's people in the item (director 1, cast 0.6, writer 0.4 by default). Items
found by several interpretations keep their best score and the id of the interpretation that
gave it. Relaxed readings (one slot dropped, discounted) fill the depth after the exact matches.
A query in which nothing is recognized returns an empty row after a few dictionary lookups.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from ltrr.catalog import Catalog
from ltrr.contracts.strategy import CandidateGenerator, QueryStatistics
from ltrr.errors import NotFittedError
from ltrr.params import Params
from ltrr.types import PAD_ID, QueryBatch, RetrievalResult
from strategies.structured.tagger import FIELDS, FieldTagger, Interpretation, TaggerConfig, postings

__all__ = ["StructuredParams", "StructuredResult", "StructuredSearch"]


class StructuredParams(Params):
    """Hyperparameters of :class:`StructuredSearch`.

    Parameters
    ----------
    fields
        Slot fields to recognize (subset of person, genre, year, decade, language, country).
    person_fields, role_weights
        Catalog fields that credit people, and the weight of each role in the score.
    genre_field, year_field, language_field, country_field
        Catalog field names holding those values.
    min_name_tokens
        People whose normalized name has fewer tokens are not in the dictionary ("Madonna").
    variant_weight
        Confidence of a derived surface form ("french" -> country France, "romantic" -> Romance).
    unmatched_penalty
        Factor per content word an interpretation leaves unexplained.
    fuzzy, fuzzy_penalty, max_edits, fuzzy_min_chars, fuzzy_min_dice
        Typo-tolerant matching: factor per character edit, at most ``max_edits`` edits (1 for
        spans shorter than 9 characters), on alphabetic spans of at least ``fuzzy_min_chars``.
    max_interpretations
        Interpretations run per query (most likely first).
    min_likelihood
        Interpretations below this likelihood are not run.
    relax, relax_penalty, relax_depth
        Also run the best interpretation with up to ``relax_depth`` slots dropped, scaled by
        ``relax_penalty`` per dropped slot and by the share of specificity kept.
    popularity_weight, role_weight
        Weights of the popularity prior and of the people's roles within a match.
    """

    fields: tuple[str, ...] = FIELDS
    person_fields: tuple[str, ...] = ("directors", "cast", "writers")
    role_weights: tuple[float, ...] = (1.0, 0.6, 0.4)
    genre_field: str = "genres"
    year_field: str = "year"
    language_field: str = "languages"
    country_field: str = "countries"
    min_name_tokens: int = Field(2, ge=1)
    variant_weight: float = Field(0.6, gt=0.0, le=1.0)
    unmatched_penalty: float = Field(0.15, gt=0.0, le=1.0)
    fuzzy: bool = True
    fuzzy_penalty: float = Field(0.5, gt=0.0, le=1.0)
    max_edits: int = Field(2, ge=1, le=3)
    fuzzy_min_chars: int = Field(5, ge=3)
    fuzzy_min_dice: float = Field(0.5, gt=0.0, le=1.0)
    max_interpretations: int = Field(3, ge=1)
    min_likelihood: float = Field(0.01, ge=0.0, le=1.0)
    relax: bool = True
    relax_penalty: float = Field(0.5, gt=0.0, le=1.0)
    relax_depth: int = Field(2, ge=1, le=3)
    popularity_weight: float = Field(0.5, ge=0.0, allow_inf_nan=False)
    role_weight: float = Field(0.25, ge=0.0, allow_inf_nan=False)

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [f for f in value if f not in FIELDS]
        if bad:
            raise ValueError(f"must name fields among {', '.join(FIELDS)}; unknown: {', '.join(bad)}")
        return value

    @field_validator("role_weights")
    @classmethod
    def _role_weights(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not (0.0 <= w <= 1.0) for w in value):
            raise ValueError(f"must hold weights in [0, 1], found {list(value)}")
        return value

    def tagger_config(self) -> TaggerConfig:
        return TaggerConfig(
            fields=self.fields, person_fields=self.person_fields, role_weights=self.role_weights,
            genre_field=self.genre_field, year_field=self.year_field,
            language_field=self.language_field, country_field=self.country_field,
            min_name_tokens=self.min_name_tokens, variant_weight=self.variant_weight,
            unmatched_penalty=self.unmatched_penalty, fuzzy=self.fuzzy,
            fuzzy_penalty=self.fuzzy_penalty, fuzzy_min_chars=self.fuzzy_min_chars,
            fuzzy_min_dice=self.fuzzy_min_dice, max_edits=self.max_edits,
        )


@dataclass(frozen=True)
class StructuredResult:
    """A retrieval result with its provenance: which interpretation produced each candidate.

    ``interpretations[q]`` are the readings run for query ``q``; ``interpretation_ids[q, j]``
    indexes the one that gave candidate ``result.ids[q, j]`` its score (-1 at pads).
    """

    result: RetrievalResult
    interpretations: tuple[tuple[Interpretation, ...], ...]
    interpretation_ids: np.ndarray


class StructuredSearch(CandidateGenerator[StructuredParams], QueryStatistics):
    """Query understanding + fielded retrieval (registry name ``"structured"``).

    Learned state: the tagger's dictionaries (``tagger_``) and the popularity ``prior_``.
    """

    type_name = "structured"
    format_version = 1
    Params = StructuredParams
    query_stat_names = ("structured_likelihood", "structured_slots")

    def __init__(self, params: StructuredParams | dict[str, Any] | None = None, *, name: str | None = None):
        super().__init__(params, name=name)
        self.tagger_: FieldTagger | None = None
        self.prior_: np.ndarray | None = None
        self._cache_tags()

    def _cache_tags(self) -> None:
        # the engine asks query_stats and then retrieve for the same text: tag it once
        self._tag_one = lru_cache(maxsize=8192)(self._tag_uncached)

    def _tag_uncached(self, text: str) -> tuple[Interpretation, ...]:
        return tuple(self._fitted()[0].tag([text])[0])

    # ------------------------------------------------------------------ building
    def _fit(self, catalog: Catalog) -> None:
        self.tagger_ = FieldTagger(self.params.tagger_config()).fit(catalog)
        pop = np.log1p(np.maximum(np.asarray(catalog.popularity, dtype=np.float64), 0.0))
        span = float(pop.max() - pop.min()) if pop.size else 0.0
        self.prior_ = (pop - pop.min()) / span if span > 0 else np.zeros_like(pop)
        self._cache_tags()

    # ------------------------------------------------------------------ understanding
    def tag(self, query: str) -> list[Interpretation]:
        """Every reading the tagger finds for ``query``, most likely first (no relaxations)."""
        self._fitted()
        return list(self._tag_one(str(query)))

    def interpret(self, query: str) -> list[Interpretation]:
        """The readings retrieval runs for ``query``: the most likely ones above
        ``min_likelihood`` (at most ``max_interpretations``), then relaxations of the best."""
        p = self.params
        readings = [r for r in self.tag(query) if r.likelihood >= p.min_likelihood]
        run = {frozenset(s.value_id for s in r.slots): r for r in readings[: p.max_interpretations]}
        if run and p.relax:
            # a relaxation may equal a reading that skipped a word; keep the likelier of the two
            for r in self._fitted()[0].relax(readings[0], p.relax_penalty, p.relax_depth):
                key = frozenset(s.value_id for s in r.slots)
                if r.likelihood >= p.min_likelihood and (key not in run or r.likelihood > run[key].likelihood):
                    run[key] = r
        return sorted(run.values(), key=lambda r: -r.likelihood)

    def query_stats(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Context signals: ``structured_likelihood`` (best reading's likelihood, 0 if none) and
        ``structured_slots`` (its number of slots)."""
        best = np.zeros(len(texts))
        slots = np.zeros(len(texts))
        if self.tagger_ is not None:
            for qi, text in enumerate(texts):
                readings = self._tag_one(str(text))
                if readings:
                    best[qi] = readings[0].likelihood
                    slots[qi] = len(readings[0].slots)
        return {"structured_likelihood": best, "structured_slots": slots}

    # ------------------------------------------------------------------ retrieval
    def explain(self, queries: QueryBatch | Sequence[str] | str, k: int) -> StructuredResult:
        """Like ``retrieve``, plus the interpretations and which one produced each candidate."""
        batch = QueryBatch.of(queries)
        result = self.retrieve(batch, k)
        got = batch.memo.get(self._memo_key())
        if got is None or got.result is not result:  # blank batch or k == 0: nothing was run
            n = len(batch)
            return StructuredResult(result, tuple(() for _ in range(n)),
                                    np.full(result.ids.shape, PAD_ID, dtype=np.int64))
        return got

    def _memo_key(self) -> str:
        return f"structured:{self.name}"

    def _retrieve(self, queries: QueryBatch, k: int) -> RetrievalResult:
        self._fitted()
        n = len(queries)
        out = RetrievalResult.empty(n, k)
        which = np.full((n, k), PAD_ID, dtype=np.int64)
        used: list[tuple[Interpretation, ...]] = []
        for qi, text in enumerate(queries.texts):
            interps = tuple(self.interpret(text)) if text.strip() else ()
            used.append(interps)
            if not interps:
                continue
            items, scores, src = self._run(interps, k)
            out.ids[qi, : items.size] = items
            out.scores[qi, : items.size] = scores
            which[qi, : items.size] = src
        queries.memo[self._memo_key()] = StructuredResult(out, tuple(used), which)
        return out

    def _run(self, interps: Sequence[Interpretation], k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Matches of the interpretations (most likely first), merged (best score per item), top
        ``k``. Stops once ``k`` items score above what any remaining reading could reach."""
        p = self.params
        t, prior = self._fitted()
        person = FIELDS.index("person")
        ceiling = 1.0 + p.popularity_weight + p.role_weight  # prior and role bonus are <= 1
        got_items: list[np.ndarray] = []
        got_scores: list[np.ndarray] = []
        got_src: list[np.ndarray] = []
        items = scores = src = np.empty(0)
        for a, it in enumerate(interps):
            if items.size >= k and scores[k - 1] >= it.likelihood * ceiling:
                break
            vids = np.array(sorted({s.value_id for s in it.slots}), dtype=np.int64)
            pos, owner = postings(t.items_.indptr, vids)
            cand = t.items_.indices[pos].astype(np.int64)
            role_w = np.where(t.value_field_[vids][owner] == person, t.roles_.data[pos], 0.0)
            uniq, inv, hits = np.unique(cand, return_inverse=True, return_counts=True)
            full = hits >= vids.size
            if not full.any():
                continue
            n_people = max(int((t.value_field_[vids] == person).sum()), 1)
            bonus = np.bincount(inv, weights=role_w, minlength=uniq.size)[full] / n_people
            match = uniq[full]
            got_items.append(match)
            got_scores.append(it.likelihood * (1.0 + p.popularity_weight * prior[match]
                                               + p.role_weight * bonus))
            got_src.append(np.full(match.size, a, dtype=np.int64))
            items, scores, src = _best_per_item(np.concatenate(got_items), np.concatenate(got_scores),
                                                np.concatenate(got_src))
        return items[:k].astype(np.int64), scores[:k].astype(np.float32), src[:k].astype(np.int64)

    def cost_ms(self, k: int) -> float:
        return 0.3 + 0.002 * k

    def _fitted(self) -> tuple[FieldTagger, np.ndarray]:
        """The tagger and the popularity prior, or an error if neither fit nor load ran."""
        if self.tagger_ is None or self.prior_ is None:
            raise NotFittedError(f"{self.name} is not fitted: call fit(catalog) or load(directory) first")
        return self.tagger_, self.prior_

    # ------------------------------------------------------------------ persistence
    def _save(self, directory: Path) -> None:
        tagger, prior = self._fitted()
        tagger.save(directory)
        np.save(directory / "prior.npy", prior, allow_pickle=False)

    def _load(self, directory: Path, manifest: dict[str, Any]) -> None:
        self.tagger_ = FieldTagger(self.params.tagger_config()).load(directory)
        self.prior_ = np.load(directory / "prior.npy", allow_pickle=False)
        self._cache_tags()


def _best_per_item(items: np.ndarray, scores: np.ndarray, src: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each item once with its best score (ties: earlier source), sorted by score, then item."""
    order = np.lexsort((src, -scores, items))
    first = np.ones(order.size, dtype=bool)
    first[1:] = items[order][1:] != items[order][:-1]
    best = order[first]
    best = best[np.lexsort((items[best], -scores[best]))]
    return items[best], scores[best], src[best]
