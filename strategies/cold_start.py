"""Pseudo-queries for cold-start Q2E: what users would likely type for an item with no clicks.

Generated from the item's own fields, each with a strength in (0, 1] (how surely the query means
this item): the title (1.0), the title without a leading article (0.9), either + year (x0.9),
a director or lead actor + title (0.7), a director alone (0.2, raised by up to 0.3 for popular
items) and genre + year (0.3, raised by up to 0.3 for popular items: such queries name many
films). Keys are normalized like the click memory's.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from ltrr.catalog import Catalog
from ltrr.text import normalize_query

_ARTICLES = ("the ", "a ", "an ")


def pseudo_queries(catalog: Catalog, rows: np.ndarray, *, n_leads: int = 2,
                   person_fields: tuple[str, ...] = ("directors",),
                   cast_field: str = "cast") -> list[tuple[str, int, float]]:
    """``(normalized query, row, strength)`` triples for catalog ``rows``.

    ``n_leads`` cast members per item are used, those with the most films in the catalog (cast
    lists are alphabetical, so this stands in for billing order).
    """
    rows = np.asarray(rows, dtype=np.int64).ravel()
    if rows.size == 0:
        return []
    films = Counter(name for f in catalog.fields for name in _names(f.get(cast_field)))
    pop = np.log1p(np.maximum(np.asarray(catalog.popularity, dtype=np.float64), 0.0))
    top = float(pop.max()) if pop.size and pop.max() > 0 else 1.0
    out: list[tuple[str, int, float]] = []
    for r in rows.tolist():
        title = normalize_query(catalog.titles[r])
        f = catalog.fields[r]
        year = _year(f.get("year"))
        if title:
            variants = [(title, 1.0)] + [(title[len(a):], 0.9) for a in _ARTICLES
                                         if title.startswith(a) and len(title) > len(a)]
            for text, w in variants:
                out.append((text, r, w))
                if year > 0:
                    out.append((f"{text} {year}", r, 0.9 * w))
        people = [p for field in person_fields for p in _names(f.get(field))]
        leads = sorted(_names(f.get(cast_field)), key=lambda c: (-films[c], c))[:n_leads]
        for person in dict.fromkeys(people + leads):
            key = normalize_query(person)
            if key and title:
                out.append((f"{key} {title}", r, 0.7))
        for person in people:  # a director's name alone names their films, popular ones first
            key = normalize_query(person)
            if key:
                out.append((key, r, 0.2 + 0.3 * float(pop[r]) / top))
        if year > 0:
            boost = 0.3 + 0.3 * float(pop[r]) / top
            for genre in _names(f.get("genres")):
                out.append((f"{normalize_query(genre)} {year}", r, boost))
    return out


def _names(value) -> list[str]:
    if not value:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if v]
    return [str(value)]


def _year(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1
