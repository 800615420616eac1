"""ExplorationGenerator: new / category-popular / seeded-random candidates, the max_k budget,
determinism per (query, seed), persistence and parameter errors."""

from __future__ import annotations

import numpy as np
import pytest

from ltrr import registry
from ltrr.catalog import Catalog
from ltrr.errors import ConfigError, NotFittedError
from strategies.explore import ExplorationGenerator


def _film(i, year, genres, pop, lang="English"):
    return {"id": f"f{i}", "title": f"Film {i}", "popularity": pop,
            "fields": {"year": year, "genres": genres, "languages": [lang], "countries": ["France"]}}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.from_records([
        _film(0, 1995, ["War"], 50), _film(1, 2010, ["Comedy"], 900), _film(2, 1998, ["War"], 400),
        _film(3, 2019, ["Drama"], 10), _film(4, 1962, ["Comedy"], 70, "French"),
        _film(5, 2019, ["War"], 5), _film(6, 1999, ["War", "Drama"], 300), _film(7, 2001, ["Comedy"], 20),
    ] + [_film(i, 1980 + i % 30, ["Drama"], float(i % 7)) for i in range(8, 208)])


def test_popular_in_the_inferred_category_else_global(catalog) -> None:
    g = ExplorationGenerator({"mode": "popular"}).fit(catalog)
    r = g.retrieve(["war movies", "war 1990s", "french comedies", "zzz qqq"], 4)
    assert r.ids[0].tolist() == [2, 6, 0, 5]  # War films, most popular first
    assert r.ids[1].tolist() == [2, 6, 0, -1]  # War of the 1990s: only three
    assert r.ids[2].tolist() == [4, -1, -1, -1]  # language French + Comedy
    assert r.ids[3].tolist() == [1, 2, 6, 4]  # nothing recognized: global popularity
    assert np.all(np.diff(r.scores[0]) < 0)


def test_new_items_latest_year_first_or_last_rows(catalog) -> None:
    by_year = ExplorationGenerator({"mode": "new"}).fit(catalog)
    assert by_year.retrieve(["war"], 3).ids[0].tolist() == [5, 6, 2]  # War of 2019, 1999, 1998
    assert by_year.retrieve(["unknown words"], 2).ids[0].tolist() == [5, 3]  # 2019 (later row first)
    by_row = ExplorationGenerator({"mode": "new", "new_by": "row", "category": False}).fit(catalog)
    assert by_row.retrieve(["war"], 3).ids[0].tolist() == [207, 206, 205]


def test_random_is_seeded_by_query_and_seed_and_capped(catalog) -> None:
    g = ExplorationGenerator({"mode": "random", "max_k": 5, "seed": 1}).fit(catalog)
    a = g.retrieve(["Some Query", "other query"], 50)
    b = g.retrieve(["some   query!", "other query"], 50)
    assert a.ids.shape == (2, 50) and (a.ids[:, 5:] == -1).all()  # max_k caps the depth
    assert np.array_equal(a.ids, b.ids)  # the same normalized text draws the same items
    assert a.ids[0].tolist() != a.ids[1].tolist()
    assert np.unique(a.ids[0, :5]).size == 5
    other_seed = ExplorationGenerator({"mode": "random", "max_k": 5, "seed": 2}).fit(catalog)
    assert other_seed.retrieve(["some query"], 5).ids[0].tolist() != a.ids[0, :5].tolist()
    # uniform: over many queries every item is drawn about equally often
    draws = g.retrieve([f"q{i}" for i in range(2000)], 5).ids.ravel()
    freq = np.bincount(draws, minlength=len(catalog)) / draws.size
    assert freq.max() < 3.0 / len(catalog) and freq.min() > 0


def test_save_load_and_errors(catalog, tmp_path) -> None:
    assert registry.get("strategy", "explore") is ExplorationGenerator
    for mode in ("new", "popular", "random"):
        g = ExplorationGenerator({"mode": mode}).fit(catalog)
        g.save(tmp_path / mode)
        h = ExplorationGenerator.load(tmp_path / mode)
        q = ["war 1990s", "comedy", "x"]
        assert np.array_equal(g.retrieve(q, 10).ids, h.retrieve(q, 10).ids)
    with pytest.raises(ConfigError, match=r"'mode' parameter input should be 'new', 'popular' or 'random'"):
        ExplorationGenerator({"mode": "fresh"})
    with pytest.raises(ConfigError, match=r"unknown: person"):
        ExplorationGenerator({"category_fields": ["person"]})
    with pytest.raises(ConfigError, match=r"The 'k' parameter of explore must be an int"):
        ExplorationGenerator().fit(catalog).retrieve(["x"], -2)


def test_an_unfitted_generator_refuses_to_save_and_to_retrieve(tmp_path) -> None:
    g = ExplorationGenerator(name="explore")
    with pytest.raises(NotFittedError, match="explore is not fitted: call fit"):
        g.save(tmp_path / "g")
    assert not (tmp_path / "g").exists()
    with pytest.raises(NotFittedError, match="explore is not fitted: call fit"):
        g.retrieve(["war"], 3)
