"""The ``xmr`` strategy on the real movie catalog: exact and misspelled titles, learning from
click pairs, bad input, persistence and the registry."""

from __future__ import annotations

import numpy as np
import pytest

from ltrr import registry
from ltrr.catalog import Catalog
from ltrr.errors import ConfigError, DataError, NotFittedError
from simulators.movies import MovieQueryGenerator
from strategies.xmr import XRLinear, train_from_pairs

N_FILMS = 6000


@pytest.fixture(scope="module")
def movies(movie_catalog_path) -> Catalog:
    return Catalog.from_jsonl(movie_catalog_path, limit=N_FILMS)


@pytest.fixture(scope="module")
def xmr(movies) -> XRLinear:
    return XRLinear({"seed": 0}).fit(movies)


@pytest.fixture(scope="module")
def word_only(movies) -> XRLinear:
    return XRLinear({"seed": 0, "char_ngrams": 0}).fit(movies)


def _queries(catalog: Catalog, qtype: str, n: int):
    return MovieQueryGenerator(catalog, seed=11, type_weights={qtype: 1.0}).generate(n)


def _p_at_1_and_recall(strategy: XRLinear, queries) -> tuple[float, float]:
    res = strategy.retrieve([q.text for q in queries], 10)
    p1 = np.mean([q.relevant.get(int(res.ids[i, 0]), 0) >= 3 for i, q in enumerate(queries)])
    rec = np.mean([any(q.relevant.get(int(j), 0) == 4 for j in res.ids[i])
                   for i, q in enumerate(queries)])
    return float(p1), float(rec)


def test_registry_name_resolves_to_the_class():
    assert registry.get("strategy", "xmr") is XRLinear


def test_exact_titles_are_found_first(xmr, movies):
    p1, rec = _p_at_1_and_recall(xmr, _queries(movies, "title", 400))
    # measured on this seed: P@1 1.0, Recall@10 1.0
    assert p1 >= 0.97
    assert rec >= 0.99


def test_character_trigrams_beat_words_alone_on_typos(xmr, word_only, movies):
    typos = _queries(movies, "typo_title", 400)
    p1, rec = _p_at_1_and_recall(xmr, typos)
    p1_w, rec_w = _p_at_1_and_recall(word_only, typos)
    # measured on this seed: words + trigrams P@1 0.825 R@10 0.94; words only P@1 0.45 R@10 0.615
    assert p1 >= 0.70 and rec >= 0.85
    assert p1 >= p1_w + 0.25
    assert rec >= rec_w + 0.2


def test_click_pairs_teach_queries_the_titles_do_not_contain(xmr, movies):
    target = movies.titles.index("The Godfather")
    query = "don corleone family saga"
    assert xmr.retrieve([query], 1).ids[0, 0] != target
    warm = XRLinear({"seed": 0}).fit_pairs(movies, [query] * 3, [target] * 3)
    assert warm.retrieve([query], 1).ids[0, 0] == target
    assert warm.n_pairs_ == 3


def test_zero_pairs_fall_back_to_item_text_and_say_so(movies):
    small = Catalog.from_records([{"id": movies.ids[i], "title": movies.titles[i]} for i in range(300)])
    with pytest.warns(UserWarning, match=r"no click pairs to train on; falling back to item text \(300 items"):
        s = XRLinear().fit_pairs(small, [], [])
    assert s.retrieve([small.titles[5]], 1).ids[0, 0] == 5


def test_unknown_labels_are_reported_and_skipped(movies):
    small = Catalog.from_records([{"id": movies.ids[i], "title": movies.titles[i]} for i in range(300)])
    with pytest.warns(UserWarning, match=r"skipped 2 click pair\(s\) with item ids not in the catalog; first: 'tt-nope', 'x1'"):
        s = train_from_pairs(small, ["a", "b", "c"], ["tt-nope", small.ids[3], "x1"])
    assert s.n_pairs_ == 1
    with pytest.warns(UserWarning, match=r"skipped 1 click pair\(s\) whose item is not in the catalog of 300 items; first: 'q' -> 300"):
        XRLinear().fit_pairs(small, ["q", "r"], [300, 2])
    with pytest.raises(DataError, match="one item row per query; got 2 queries and 1 rows"):
        XRLinear().fit_pairs(small, ["q", "r"], [2])


@pytest.mark.parametrize(("params", "match"), [
    ({"beam": 0}, r"the 'beam' parameter input should be greater than or equal to 1. Got 0 instead"),
    ({"branching": 1}, r"the 'branching' parameter input should be greater than or equal to 2. Got 1 instead"),
    ({"negatives": "all"}, r"the 'negatives' parameter .*Got 'all' instead"),
    ({"beam_size": 3}, r"unknown key 'beam_size'; allowed keys: C, beam, bias, branching"),
    ({"word_ngrams": 0, "char_ngrams": 0}, r"word_ngrams and char_ngrams cannot both be 0"),
])
def test_bad_config_is_an_error_naming_the_value(params, match):
    with pytest.raises(ConfigError, match=match):
        XRLinear(params)


def test_save_load_retrieves_identically(xmr, movies, tmp_path):
    queries = [q.text for q in _queries(movies, "typo_title", 100)] + ["", "!!! ???"]
    xmr.save(tmp_path / "xmr")
    loaded = XRLinear.load(tmp_path / "xmr")
    a = xmr.retrieve(queries, 20)
    b = loaded.retrieve(queries, 20)
    assert np.array_equal(a.ids, b.ids)
    assert np.array_equal(a.scores, b.scores)
    assert (a.ids[-2] == -1).all()  # blank query: empty row
    assert (a.ids[-1] == -1).all()  # no known word or trigram: no match rather than bias noise


def test_seeded_training_is_deterministic(movies):
    small = Catalog.from_records([{"id": movies.ids[i], "title": movies.titles[i]} for i in range(1500)])
    a = XRLinear({"seed": 5}).fit(small)
    b = XRLinear({"seed": 5}).fit(small)
    q = [t.lower() for t in small.titles[:200]]
    ra, rb = a.retrieve(q, 10), b.retrieve(q, 10)
    assert np.array_equal(ra.ids, rb.ids) and np.array_equal(ra.scores, rb.scores)


def test_results_are_sorted_unique_and_padded(xmr):
    res = xmr.retrieve(["the godfather", "star", "love story 1970"], 2000)
    for i in range(res.n_queries):
        ids, scores = res.row(i)
        assert np.all(np.diff(scores) <= 0)
        assert len(set(ids.tolist())) == ids.size
        assert ids.size <= 10 * 100  # beam x leaf size at most


def test_observed_clicks_train_the_next_model_while_the_old_one_serves(movies, tmp_path):
    small = Catalog.from_records([{"id": movies.ids[i], "title": movies.titles[i]} for i in range(400)])
    query = "that film with the rosebud sled"
    first = XRLinear({"seed": 0}).fit_pairs(small, ["another query"], [7])
    first.observe(query, np.arange(10), np.array([42]), ts=0.0)
    assert first.n_observed == 1
    nxt = first.retrained(small)
    assert nxt.retrieve([query], 1).ids[0, 0] == 42
    assert nxt.n_pairs_ == 2 and first.n_pairs_ == 1
    nxt.save(tmp_path / "m")
    assert XRLinear.load(tmp_path / "m").pair_queries_ == ["another query", query]


def test_added_items_are_retrievable_and_learned_pairs_survive(movies):
    base = Catalog.from_records([{"id": movies.ids[i], "title": movies.titles[i]} for i in range(300)])
    extra = Catalog.from_records([{"id": "new-1", "title": "Zyxwv Quantum Llama Parade"}])
    s = XRLinear({"seed": 0}).fit_pairs(base, ["rosebud sled film"], [9])
    grown = base.extend(extra)
    s.add_items(grown, np.array([300]))
    assert s.retrieve(["quantum llama parade"], 1).ids[0, 0] == 300
    assert s.retrieve(["rosebud sled film"], 1).ids[0, 0] == 9


def test_an_unfitted_strategy_refuses_to_save(tmp_path):
    with pytest.raises(NotFittedError, match=r"xmr is not fitted: call fit\(catalog\) or load\(directory\) before save"):
        XRLinear(name="xmr").save(tmp_path / "s")
    assert not (tmp_path / "s").exists()
