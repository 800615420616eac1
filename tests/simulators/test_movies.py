"""Movie query generator: determinism, field-derived relevance per type, repeats, errors."""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ltrr.catalog import Catalog
from ltrr.io import read_qrels, read_queries
from ltrr.text import ENGLISH_STOP_WORDS
from simulators.movies import (
    QTYPES,
    MovieQueryGenerator,
    SimQuery,
    _edit,
    write_queries_and_qrels,
)

CATALOG = Path(__file__).resolve().parents[2] / "data" / "movies" / "catalog.jsonl"
WORD = re.compile(r"\w+")


def tokens(text: str) -> list[str]:
    return WORD.findall(text.lower())


def levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.from_jsonl(CATALOG)


@pytest.fixture(scope="module")
def gen(catalog) -> MovieQueryGenerator:
    return MovieQueryGenerator(catalog, seed=7)


@pytest.fixture(scope="module")
def queries(gen) -> list[SimQuery]:
    return gen.generate(3000)


@pytest.fixture(scope="module")
def credited(catalog) -> dict[str, set[int]]:
    """lower-cased director or cast name -> rows crediting them."""
    out: dict[str, set[int]] = {}
    for i, f in enumerate(catalog.fields):
        for name in f["directors"] + f["cast"]:
            out.setdefault(name.lower(), set()).add(i)
    return out


def of_type(queries, qtype):
    got = [q for q in queries if q.qtype == qtype]
    assert len(got) >= 100, f"too few {qtype} queries to test: {len(got)}"
    return got


def names_in(catalog, row, *keys):
    return {n.lower() for k in keys for n in catalog.fields[row].get(k) or []}


# ---------------------------------------------------------------------- determinism
def test_same_seed_same_queries_and_different_seed_different(catalog, gen, queries):
    again = MovieQueryGenerator(catalog, seed=7).generate(3000)
    assert again == queries
    other = MovieQueryGenerator(catalog, seed=8).generate(3000)
    assert [q.text for q in other] != [q.text for q in queries]
    assert gen.generate(50, seed=3) == gen.generate(50, seed=3)
    assert gen.generate(50, seed=3) != gen.generate(50, seed=4)


def test_stream_is_deterministic_and_seed_dependent(gen):
    a = gen.stream(2000, 300, seed=1)
    assert a == gen.stream(2000, 300, seed=1)
    b = gen.stream(2000, 300, seed=2)
    assert [q.qid for q in a] != [q.qid for q in b]
    # both streams sample one query universe: the pool drawn with the generator's seed
    pool = {q.qid: q for q in gen.sample_pool(300)}
    assert all(pool[q.qid] == q for q in a + b)


# ---------------------------------------------------------------------- all queries
def test_every_query_is_well_formed(catalog, queries):
    assert Counter(q.qtype for q in queries).keys() == set(QTYPES)
    n = len(catalog)
    for q in queries:
        assert q.relevant, q
        assert q.text == q.text.lower() and q.text.strip()
        assert all(isinstance(r, int) and 0 <= r < n for r in q.relevant)
        assert all(isinstance(g, int) and 1 <= g <= 4 for g in q.relevant.values())
    assert len({q.qid for q in queries}) == len(queries)


def test_type_mix_follows_the_weights(queries):
    share = Counter(q.qtype for q in queries)
    assert share["title"] / len(queries) == pytest.approx(0.30, abs=0.04)
    assert share["paraphrase"] / len(queries) == pytest.approx(0.10, abs=0.03)


# ---------------------------------------------------------------------- per type
def test_title_queries_grade_the_film_4_and_remakes_3(catalog, queries):
    by_title: dict[str, set[int]] = {}
    for i, t in enumerate(catalog.titles):
        by_title.setdefault(t.casefold().strip(), set()).add(i)
    remakes = 0
    for q in of_type(queries, "title"):
        best = [r for r, g in q.relevant.items() if g == 4]
        assert len(best) == 1
        assert catalog.titles[best[0]].lower().strip() == q.text
        assert set(q.relevant) == by_title[q.text.casefold()]
        assert all(g == 3 for r, g in q.relevant.items() if r != best[0])
        remakes += len(q.relevant) > 1
    assert remakes >= 1


def test_typo_queries_edit_one_or_two_long_words_within_distance_2(catalog, queries):
    for q in of_type(queries, "typo_title"):
        (film,) = [r for r, g in q.relevant.items() if g == 4]
        want, got = tokens(catalog.titles[film]), tokens(q.text)
        assert len(want) == len(got), (q.text, catalog.titles[film])
        changed = [(w, g) for w, g in zip(want, got, strict=True) if w != g]
        assert 1 <= len(changed) <= 2, (q.text, catalog.titles[film])
        for w, g in changed:
            assert len(w) >= 4
            assert 1 <= levenshtein(w, g) <= 2


def test_person_queries_relevant_films_credit_the_person(catalog, queries, credited):
    for q in of_type(queries, "person"):
        for r, g in q.relevant.items():
            directed = q.text in names_in(catalog, r, "directors")
            acted = q.text in names_in(catalog, r, "cast")
            wrote = q.text in names_in(catalog, r, "writers")
            assert directed or acted or wrote, (q.text, catalog.titles[r])
            if directed:
                assert g >= 3
            elif not acted:
                assert g == 2
        # complete: every film crediting the person as director or cast is relevant
        assert credited[q.text] <= set(q.relevant)
        assert len(credited[q.text]) >= 2


def test_person_grades_on_a_small_catalog():
    recs = [
        {"id": "a", "title": "One", "popularity": 100,
         "fields": {"year": 1990, "genres": ["War"], "directors": ["Ann Lee"], "cast": ["Bo Chan"],
                    "writers": []}},
        {"id": "b", "title": "Two", "popularity": 1,
         "fields": {"year": 1991, "genres": ["War"], "directors": ["Ann Lee"],
                    "cast": ["Di Eng", "Ed Fox", "Fa Gil"], "writers": ["Bo Chan"]}},
        {"id": "c", "title": "Three", "popularity": 2,
         "fields": {"year": 1992, "genres": ["Drama"], "directors": ["Cy Dee"],
                    "cast": ["Bo Chan", "Di Eng", "Ed Fox", "Fa Gil"], "writers": []}},
        {"id": "d", "title": "Four", "popularity": 3,
         "fields": {"year": 1993, "genres": ["Drama"], "directors": ["Cy Dee"],
                    "cast": ["Di Eng", "Ed Fox", "Fa Gil", "Gu Hao"], "writers": []}},
    ]
    gen = MovieQueryGenerator(Catalog.from_records(recs), seed=0, type_weights={"person": 1})
    pool = {q.text: q.relevant for q in gen.sample_pool(6)}
    # people with >= 2 films as director or cast; Gu Hao has one
    assert set(pool) == {"ann lee", "bo chan", "cy dee", "di eng", "ed fox", "fa gil"}
    # directed: 3, +1 in the top popularity quartile
    assert pool["ann lee"] == {0: 4, 1: 3}
    # Bo Chan: lead cast of 0, writer of 1, in film 2 not among its three most prolific actors
    assert pool["bo chan"] == {0: 3, 1: 2, 2: 2}
    assert pool["di eng"] == {1: 3, 2: 3, 3: 3}
    with pytest.raises(ValueError, match=r"Could only draw 6 distinct queries of the 7 asked for"):
        gen.sample_pool(7)


def _parse_attribute(text, genre_names, places):
    toks = set(tokens(text))
    genres = [g for g in genre_names if set(tokens(g)) <= toks]
    genre = max(genres, key=len)  # "musical" over "music"
    place = [p for p in places if set(tokens(p)) <= toks]
    decade = re.search(r"\b(\d{4})s\b", text)
    year = re.search(r"\b(\d{4})\b(?!s)", text)
    return genre, (max(place, key=len) if place else None), decade, year


def test_attribute_queries_relevant_films_are_exactly_the_matches(catalog, queries):
    f = catalog.fields
    genre_names = sorted({g for x in f for g in x["genres"]})
    langs = {x.lower() for r in f for x in r["languages"]}
    countries = {x.lower() for r in f for x in r["countries"]}
    by_genre = {g: [i for i, r in enumerate(f) if g in r["genres"]] for g in genre_names}
    for q in of_type(queries, "attribute")[:150]:
        genre, place, decade, year = _parse_attribute(q.text, genre_names, langs | countries)

        def match(i, by, genre=genre, place=place, decade=decade, year=year):
            r = f[i]
            ok = genre in r["genres"]
            if decade:
                ok = ok and r["year"] // 10 * 10 == int(decade.group(1))
            elif year:
                ok = ok and r["year"] == int(year.group(1))
            if by:
                ok = ok and place in {x.lower() for x in r[by]}
            return ok

        options = [{i for i in by_genre[genre] if match(i, None)}]
        if place:
            options = [{i for i in by_genre[genre] if match(i, by)} for by in ("languages", "countries")]
        assert set(q.relevant) in options, q.text
        assert 5 <= len(q.relevant) <= 500


def test_attribute_grades_follow_popularity_buckets(catalog, queries):
    for q in of_type(queries, "attribute"):
        m = len(q.relevant)
        grades = Counter(q.relevant.values())
        assert grades[3] == math.ceil(0.1 * m)
        assert grades[3] + grades[2] == math.ceil(0.4 * m)
        pop = {g: [catalog.popularity[r] for r, gg in q.relevant.items() if gg == g] for g in grades}
        for hi, lo in ((3, 2), (2, 1)):
            if pop.get(hi) and pop.get(lo):
                assert min(pop[hi]) >= max(pop[lo])


def test_paraphrase_describes_one_film_without_its_title_words(catalog, queries):
    for q in of_type(queries, "paraphrase"):
        (film,) = [r for r, g in q.relevant.items() if g == 4]
        fields = catalog.fields[film]
        title_words = set(tokens(catalog.titles[film])) - ENGLISH_STOP_WORDS
        assert not title_words & (set(tokens(q.text)) - ENGLISH_STOP_WORDS), q.text
        assert str(fields["year"]) in q.text
        directors = [d.lower() for d in fields["directors"] if d.lower() in q.text]
        assert directors, q.text
        for r, g in q.relevant.items():
            if r != film:
                assert g == 1
                assert directors[0] in names_in(catalog, r, "directors")


def test_person_attribute_grades(catalog, queries):
    for q in of_type(queries, "person_attribute"):
        decade = int(re.search(r"\b(\d{4})s\b", q.text).group(1))
        top = [r for r, g in q.relevant.items() if g >= 3]
        assert top
        shared_people = set.intersection(
            *(names_in(catalog, r, "directors", "cast", "writers") for r in q.relevant))
        assert any(p in q.text for p in shared_people), q.text
        shared_genres = set.intersection(*({g.lower() for g in catalog.fields[r]["genres"]}
                                           for r in q.relevant))
        assert any(set(tokens(g)) <= set(tokens(q.text)) for g in shared_genres), q.text
        for r, g in q.relevant.items():
            in_decade = catalog.fields[r]["year"] // 10 * 10 == decade
            assert in_decade == (g >= 3)


# ---------------------------------------------------------------------- pools and streams
def test_pool_has_distinct_texts(gen):
    pool = gen.sample_pool(500)
    assert len({q.text for q in pool}) == 500
    assert [q.qid for q in pool] == [f"m{i:05d}" for i in range(500)]


def test_stream_repeats_head_queries(gen):
    stream = gen.stream(5000, 1000, seed=11)
    counts = Counter(q.qid for q in stream)
    assert len(counts) < 1000
    top = counts.most_common(1)[0][1]
    assert top >= 5000 / sum(1 / r for r in range(1, 1001)) * 0.5  # Zipf(1) head ~ 666
    flat = gen.stream(5000, 1000, seed=11, zipf_exponent=0.0)
    assert len(Counter(q.qid for q in flat)) > len(counts)


# ---------------------------------------------------------------------- configuration errors
def test_unknown_type_weight_lists_the_valid_types(catalog):
    with pytest.raises(ValueError, match=r"Unknown query type\(s\) 'titel' in type_weights; "
                                         r"valid types: title, typo_title, person, attribute, "
                                         r"paraphrase, person_attribute"):
        MovieQueryGenerator(catalog, type_weights={"titel": 1.0})


@pytest.mark.parametrize("weights, match", [
    ({"title": -1.0}, r"type_weights\['title'\] must be a finite number >= 0. Got -1.0 instead."),
    ({"title": 0.0}, r"must give some type a positive weight"),
])
def test_bad_type_weights(catalog, weights, match):
    with pytest.raises(ValueError, match=match):
        MovieQueryGenerator(catalog, type_weights=weights)


def test_type_weights_restrict_the_types(gen, catalog):
    only = MovieQueryGenerator(catalog, seed=1, type_weights={"typo_title": 1.0})
    assert {q.qtype for q in only.generate(200)} == {"typo_title"}


def test_bad_counts_and_seeds(gen):
    with pytest.raises(ValueError, match=r"n must be an int >= 1. Got 0 instead."):
        gen.generate(0)
    with pytest.raises(ValueError, match=r"seed must be a non-negative int. Got -1 instead."):
        gen.generate(3, seed=-1)
    with pytest.raises(ValueError, match=r"pool_size must be an int >= 1. Got 0 instead."):
        gen.stream(10, 0)


def test_catalog_without_people_rejects_person_types():
    cat = Catalog.from_records([{"id": "a", "title": "An Elephant", "fields": {}}])
    with pytest.raises(ValueError, match=r"nothing to build query type\(s\) person, attribute"):
        MovieQueryGenerator(cat)
    only = MovieQueryGenerator(cat, type_weights={"title": 1, "typo_title": 1})
    got = only.generate(40)
    assert {q.qtype for q in got} == {"title", "typo_title"}
    assert all(q.relevant == {0: 4} for q in got)
    assert {q.text for q in got if q.qtype == "title"} == {"an elephant"}
    assert all(q.text != "an elephant" and tokens(q.text)[0] == "an"
               for q in got if q.qtype == "typo_title")  # "an" is too short to edit


# ---------------------------------------------------------------------- edits and writing
@settings(max_examples=200, deadline=None)
@given(word=st.text(alphabet="abcdefghijklmnopqrstuvwxyzé", min_size=4, max_size=12),
       seed=st.integers(0, 2**32 - 1))
def test_edit_always_changes_the_word_by_at_most_2(word, seed):
    out = _edit(word, np.random.default_rng(seed))
    assert out != word
    assert 1 <= levenshtein(word, out) <= 2
    assert WORD.fullmatch(out)


def test_write_queries_and_qrels_round_trips(tmp_path, catalog, gen):
    stream = gen.stream(300, 50, seed=0)
    qpath, rpath = tmp_path / "q.jsonl", tmp_path / "qrels.txt"
    write_queries_and_qrels(stream, catalog, qpath, rpath)
    distinct = {q.qid: q for q in stream}
    assert dict(read_queries(qpath)) == {k: q.text for k, q in distinct.items()}
    qrels = read_qrels(rpath)
    assert qrels == {k: {catalog.ids[r]: g for r, g in q.relevant.items()} for k, q in distinct.items()}
    clash = [SimQuery("x", "a", "title", {0: 4}), SimQuery("x", "b", "title", {0: 4})]
    with pytest.raises(ValueError, match=r"qid 'x' is used for two texts: 'a' and 'b'"):
        write_queries_and_qrels(clash, catalog, qpath, rpath)
