"""Simulated query streams with graded relevance over the movie catalog.

The movie catalog (``data/movies/catalog.jsonl``) has no human relevance judgments. The queries
here are generated from the catalog's own structured fields (title, year, genres, directors,
cast, writers, languages, countries, popularity) and **their relevance grades are derived from
those fields by fixed rules, not judged by people**. They are a controlled testbed for the
retrieval decision (which strategy finds what), not a substitute for human judgments.

Query types (``qtype``) and how their grades (1..4) are derived:

``title``
    A film's exact title (films drawn with probability ~ ``log1p(popularity) + 1``, so obscure
    films appear too). The film: 4; other films with the identical title (remakes): 3.
``typo_title``
    The same with one or two single-character edits (swap, delete, insert, substitute) in words
    of at least four letters, so exact lexical match fails for the edited words. Same grades.
``person``
    A director's or cast member's name (people credited on at least two films). Directed: 3, +1
    when the film is in the catalog's top popularity quartile; lead cast: 3; other cast: 2;
    writer: 2 (the best role counts). The catalog lists cast alphabetically, without billing
    order, so "lead" is a proxy: the three cast members of a film with the most films in the
    catalog.
``attribute``
    Genre + decade / year, optionally with a language or country ("french comedy 1960s",
    "drama from 2005"). Every film matching all the attributes is relevant, graded by
    popularity rank within the matches: top 10% 3, next 30% 2, the rest 1. Only combinations
    with ``min_attribute_matches..max_attribute_matches`` matches are used.
``paraphrase``
    A description without the title's words ("the 1994 crime film directed by quentin
    tarantino starring john travolta") whose fields match exactly one film. The film: 4; the
    same director's other films of the same genre: 1.
``person_attribute``
    Person + genre + decade ("tom hanks war 1990s"). Films matching all three: 4 when in the
    top popularity quartile, else 3; the person's other films of that genre: 1.

Query texts are lowercase. Streams repeat queries: :meth:`MovieQueryGenerator.stream` samples
a pool of distinct queries with a Zipf-like law over a popularity-ordered rank, as head queries
repeat in real search logs (the click memory learns from those repeats).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ltrr.catalog import Catalog
from ltrr.text import ENGLISH_STOP_WORDS

QTYPES = ("title", "typo_title", "person", "attribute", "paraphrase", "person_attribute")

DEFAULT_TYPE_WEIGHTS: Mapping[str, float] = {
    "title": 0.30,
    "typo_title": 0.15,
    "person": 0.20,
    "attribute": 0.15,
    "paraphrase": 0.10,
    "person_attribute": 0.10,
}

_WORD = re.compile(r"\w+")
_LETTERS = re.compile(r"[^\W\d_]+")  # runs of letters: the words a typo may edit
_LONG_WORD = re.compile(r"[^\W\d_]{4,}")
_TWO_WORDS = re.compile(r"[^\W\d_]+\W+[^\W\d_]+")
_ANNOTATED = re.compile(r"[()\d]")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz"
_MAX_ATTEMPTS = 50  # draws per query before a type is declared unable to produce one


@dataclass(frozen=True)
class SimQuery:
    """One simulated query: id, text, type and graded relevance ``{catalog row: grade}``.

    Streams hand out the same object for every repeat of a query, so treat ``relevant`` as
    read-only.
    """

    qid: str
    text: str
    qtype: str
    relevant: dict[int, int] = field(hash=False)


class _Sampler:
    """Draws indices with probability proportional to fixed non-negative weights (O(log n))."""

    def __init__(self, weights: np.ndarray) -> None:
        self.cdf = np.cumsum(np.asarray(weights, dtype=np.float64))
        self.total = float(self.cdf[-1]) if self.cdf.size else 0.0

    def draw(self, rng: np.random.Generator) -> int:
        return int(np.searchsorted(self.cdf, rng.random() * self.total, side="right"))


def _valid_person(name: str) -> bool:
    # single-word credits ("Jr.", "Madonna") and annotated ones ("X (Y)") make poor queries
    return (name[:1].isupper() and _TWO_WORDS.search(name) is not None
            and _ANNOTATED.search(name) is None)


def _content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in ENGLISH_STOP_WORDS}


class MovieQueryGenerator:
    """Seeded generator of graded queries over a movie catalog.

    Parameters
    ----------
    catalog
        A catalog whose ``fields`` carry ``year``, ``genres``, ``directors``, ``cast``,
        ``writers``, ``languages`` and ``countries`` (as ``data/movies/catalog.jsonl`` does).
    seed
        Seed of every random choice; the same seed gives the same queries.
    type_weights
        Relative frequency of each query type (names in ``QTYPES``); types left out are not
        generated. Defaults to ``DEFAULT_TYPE_WEIGHTS``.
    min_attribute_matches, max_attribute_matches
        Attribute combinations are used only when this many films match them.

    Notes
    -----
    All lookup tables (title groups, person -> films by role, attribute -> films) are built
    once here, so generating 20,000 queries takes about a second.
    """

    def __init__(self, catalog: Catalog, seed: int = 0,
                 type_weights: Mapping[str, float] | None = None, *,
                 min_attribute_matches: int = 5, max_attribute_matches: int = 500) -> None:
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int. Got {seed!r} instead.")
        if not 1 <= min_attribute_matches <= max_attribute_matches:
            raise ValueError(
                "min_attribute_matches and max_attribute_matches must satisfy "
                f"1 <= min <= max. Got {min_attribute_matches} and {max_attribute_matches}."
            )
        self.catalog = catalog
        self.seed = int(seed)
        self.type_weights = _check_type_weights(
            DEFAULT_TYPE_WEIGHTS if type_weights is None else type_weights
        )
        self.min_attribute_matches = min_attribute_matches
        self.max_attribute_matches = max_attribute_matches
        self._build()
        empty = [t for t, w in self.type_weights.items() if w > 0 and self._samplers[t].total == 0]
        if empty:
            raise ValueError(
                f"This catalog has nothing to build query type(s) {', '.join(empty)} from; "
                "give them weight 0 in type_weights."
            )
        self._types = tuple(t for t in QTYPES if self.type_weights.get(t, 0.0) > 0)
        self._type_sampler = _Sampler(np.array([self.type_weights[t] for t in self._types]))

    # ------------------------------------------------------------------ tables, built once
    def _build(self) -> None:
        cat = self.catalog
        n = len(cat)
        fields = cat.fields
        pop = np.asarray(cat.popularity, dtype=np.float64)
        self._pop = pop
        self._popular = pop >= np.quantile(pop, 0.75) if n else np.zeros(0, dtype=bool)
        self._film_weight = np.log1p(np.maximum(pop, 0.0)) + 1.0
        years = np.array([_as_year(f.get("year")) for f in fields], dtype=np.int64)
        self._year = years
        self._decade = np.where(years > 0, years // 10 * 10, -1)
        self._genres = [[str(g).lower() for g in (f.get("genres") or [])] for f in fields]
        genre_names = sorted({g for gs in self._genres for g in gs})
        self._genre_bit = {g: np.int64(1) << i for i, g in enumerate(genre_names)}
        self._genre_mask = np.array(
            [sum(int(self._genre_bit[g]) for g in set(gs)) for gs in self._genres], dtype=np.int64
        )
        self._directors = [list(f.get("directors") or []) for f in fields]
        self._cast = [list(f.get("cast") or []) for f in fields]
        self._writers = [list(f.get("writers") or []) for f in fields]

        # titles: identical (case-folded) titles are remakes of each other
        self._title_key = [t.casefold().strip() for t in cat.titles]
        groups: dict[str, list[int]] = {}
        for i, key in enumerate(self._title_key):
            groups.setdefault(key, []).append(i)
        self._title_groups = groups
        has_words = np.array([bool(_WORD.search(t)) for t in cat.titles], dtype=bool)
        typo_ok = np.array([_LONG_WORD.search(t) is not None for t in cat.titles], dtype=bool)

        # people: films by role
        role_rows: dict[str, tuple[list[int], list[int], list[int]]] = {}
        for i in range(n):
            for r, names in enumerate((self._directors[i], self._cast[i], self._writers[i])):
                for name in names:
                    role_rows.setdefault(name, ([], [], []))[r].append(i)
        self._roles = role_rows
        # "lead" proxy: the three cast members of a film with the most films in the catalog
        valid = {name for name in role_rows if _valid_person(name)}
        n_acted = {name: len(role_rows[name][1]) for name in valid}
        self._leads = [
            sorted((c for c in cast if c in n_acted), key=lambda c: (-n_acted[c], c))[:3]
            for cast in self._cast
        ]
        people = sorted(
            name for name, (d, c, _w) in role_rows.items()
            if name in valid and len(set(d) | set(c)) >= 2
        )
        self._people = people
        self._person_films = [
            np.unique(np.array(role_rows[p][0] + role_rows[p][1] + role_rows[p][2], dtype=np.int64))
            for p in people
        ]
        # famous people are searched more: weight ~ sqrt of their films' summed popularity
        person_weight = np.array([np.sqrt(pop[f].sum()) + 1.0 for f in self._person_films])
        has_genre_film = np.array(
            [bool((self._genre_mask[f] != 0).any() and (self._decade[f] > 0).any())
             for f in self._person_films], dtype=bool)

        # attribute combinations -> films
        combos: dict[tuple, list[int]] = {}
        for i in range(n):
            dec, yr = int(self._decade[i]), int(years[i])
            langs = fields[i].get("languages") or []
            countries = fields[i].get("countries") or []
            for g in set(self._genres[i]):
                if dec > 0:
                    combos.setdefault(("genre_decade", g, dec), []).append(i)
                    combos.setdefault(("genre_year", g, yr), []).append(i)
                for lang in langs:
                    combos.setdefault(("language_genre", g, lang), []).append(i)
                    if dec > 0:
                        combos.setdefault(("language_genre_decade", g, lang, dec), []).append(i)
                for country in countries:
                    combos.setdefault(("country_genre", g, country), []).append(i)
                    if dec > 0:
                        combos.setdefault(("country_genre_decade", g, country, dec), []).append(i)
        lo, hi = self.min_attribute_matches, self.max_attribute_matches
        kept = sorted(k for k, rows in combos.items() if lo <= len(set(rows)) <= hi)
        self._combos = kept
        self._combo_rows = [np.unique(np.array(combos[k], dtype=np.int64)) for k in kept]
        combo_weight = np.sqrt([float(r.size) for r in self._combo_rows])

        paraphrase_ok = np.array(
            [bool(self._directors[i]) and bool(self._genres[i]) and years[i] > 0 and has_words[i]
             for i in range(n)], dtype=bool)

        self._samplers = {
            "title": _Sampler(self._film_weight * has_words),
            "typo_title": _Sampler(self._film_weight * typo_ok),
            "person": _Sampler(person_weight if people else np.zeros(0)),
            "attribute": _Sampler(combo_weight if kept else np.zeros(0)),
            "paraphrase": _Sampler(self._film_weight * paraphrase_ok),
            "person_attribute": _Sampler(person_weight * has_genre_film if people else np.zeros(0)),
        }

    # ------------------------------------------------------------------ public API
    def generate(self, n: int, seed: int | None = None) -> list[SimQuery]:
        """``n`` independently drawn queries (texts may repeat), qids ``g000000``...

        Deterministic: the same generator seed (or ``seed``, when given) and ``n`` give the same
        list.
        """
        _check_count("n", n)
        rng = np.random.default_rng(np.random.SeedSequence([self._seed(seed), 1]))
        out = []
        for i in range(n):
            text, qtype, relevant = self._draw(rng)
            out.append(SimQuery(f"g{i:06d}", text, qtype, relevant))
        return out

    def sample_pool(self, n_pool: int, seed: int | None = None) -> list[SimQuery]:
        """``n_pool`` queries with distinct texts, qids ``m00000``... in draw order.

        Raises ValueError when the catalog cannot supply that many distinct queries.
        """
        _check_count("n_pool", n_pool)
        rng = np.random.default_rng(np.random.SeedSequence([self._seed(seed), 2]))
        seen: set[str] = set()
        out: list[SimQuery] = []
        budget = 20 * n_pool + 1000
        while len(out) < n_pool and budget > 0:
            budget -= 1
            text, qtype, relevant = self._draw(rng)
            if text in seen:
                continue
            seen.add(text)
            out.append(SimQuery(f"m{len(out):05d}", text, qtype, relevant))
        if len(out) < n_pool:
            raise ValueError(
                f"Could only draw {len(out)} distinct queries of the {n_pool} asked for "
                "from this catalog; ask for a smaller pool."
            )
        return out

    def stream(self, n: int, pool_size: int, seed: int | None = None, *,
               zipf_exponent: float = 1.0) -> list[SimQuery]:
        """``n`` queries sampled with replacement from a pool of ``pool_size`` distinct ones.

        The pool (drawn with the generator's seed) is ranked by the popularity of each query's
        best answer plus Gumbel noise, and rank ``r`` (1-based) is drawn with probability
        ``~ r ** -zipf_exponent``, so head queries repeat often. ``seed`` (default: the
        generator's seed) drives the stream order only, so streams of different seeds share
        one query universe.
        """
        _check_count("n", n)
        _check_count("pool_size", pool_size)
        if not (isinstance(zipf_exponent, (int, float)) and zipf_exponent >= 0):
            raise ValueError(f"zipf_exponent must be a float >= 0. Got {zipf_exponent!r} instead.")
        pool = self.sample_pool(pool_size)
        rank_rng = np.random.default_rng(np.random.SeedSequence([self.seed, 3]))
        head_pop = np.array([self._head_popularity(q) for q in pool])
        key = np.log1p(head_pop) + rank_rng.gumbel(size=len(pool))
        order = np.argsort(-key, kind="stable")
        rank_weight = np.arange(1, len(pool) + 1, dtype=np.float64) ** -float(zipf_exponent)
        cdf = np.cumsum(rank_weight)
        rng = np.random.default_rng(np.random.SeedSequence([self._seed(seed), 4]))
        ranks = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
        ranks = np.minimum(ranks, len(pool) - 1)
        return [pool[i] for i in order[ranks]]

    # ------------------------------------------------------------------ one query
    def _seed(self, seed: int | None) -> int:
        if seed is None:
            return self.seed
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int. Got {seed!r} instead.")
        return int(seed)

    def _head_popularity(self, q: SimQuery) -> float:
        top = max(q.relevant.values())
        return float(max(self._pop[r] for r, g in q.relevant.items() if g == top))

    def _draw(self, rng: np.random.Generator) -> tuple[str, str, dict[int, int]]:
        qtype = self._types[self._type_sampler.draw(rng)]
        make = getattr(self, f"_make_{qtype}")
        for _ in range(_MAX_ATTEMPTS):
            got = make(rng)
            if got is not None:
                return got[0], qtype, got[1]
        raise RuntimeError(f"query type {qtype!r} failed {_MAX_ATTEMPTS} draws in a row")

    def _title_relevance(self, i: int) -> dict[int, int]:
        rel = {r: 3 for r in self._title_groups[self._title_key[i]]}
        rel[i] = 4
        return rel

    def _make_title(self, rng):
        i = self._samplers["title"].draw(rng)
        return self.catalog.titles[i].lower().strip(), self._title_relevance(i)

    def _make_typo_title(self, rng):
        i = self._samplers["typo_title"].draw(rng)
        text = self.catalog.titles[i].lower().strip()
        spans = [m.span() for m in _LETTERS.finditer(text) if m.end() - m.start() >= 4]
        k = min(len(spans), 1 + int(rng.random() < 0.35))
        picked = sorted(rng.choice(len(spans), size=k, replace=False).tolist(), reverse=True)
        for s in picked:  # right to left, so earlier spans keep their offsets
            a, b = spans[s]
            text = text[:a] + _edit(text[a:b], rng) + text[b:]
        return text, self._title_relevance(i)

    def _person_relevance(self, name: str) -> dict[int, int]:
        directed, acted, wrote = self._roles[name]
        rel: dict[int, int] = {}
        for r in wrote:
            rel[r] = max(rel.get(r, 0), 2)
        for r in acted:
            rel[r] = max(rel.get(r, 0), 3 if name in self._leads[r] else 2)
        for r in directed:
            rel[r] = max(rel.get(r, 0), 4 if self._popular[r] else 3)
        return rel

    def _make_person(self, rng):
        name = self._people[self._samplers["person"].draw(rng)]
        return name.lower(), self._person_relevance(name)

    def _make_attribute(self, rng):
        c = self._samplers["attribute"].draw(rng)
        key, rows = self._combos[c], self._combo_rows[c]
        order = np.lexsort((rows, -self._pop[rows]))  # most popular first, ties by row
        m = rows.size
        grade_by_rank = np.where(np.arange(m) < np.ceil(0.1 * m), 3,
                                 np.where(np.arange(m) < np.ceil(0.4 * m), 2, 1))
        rel = dict(zip(rows[order].tolist(), grade_by_rank.tolist(), strict=True))
        return _attribute_text(key, rng), rel

    def _make_paraphrase(self, rng):
        i = self._samplers["paraphrase"].draw(rng)
        title_words = _content_words(self.catalog.titles[i])
        year = int(self._year[i])
        if str(year) in title_words:  # "Dracula 2000": the year would repeat a title word
            return None
        genres = [g for g in self._genres[i] if not (_content_words(g) & title_words)]
        directors = [d for d in self._directors[i] if not (_content_words(d) & title_words)]
        if not genres or not directors:
            return None
        genre = genres[int(rng.integers(len(genres)))]
        director = directors[int(rng.integers(len(directors)))]
        leads = [c for c in self._leads[i] if not (_content_words(c) & title_words)]
        bit = self._genre_bit[genre]
        same = np.array(self._roles[director][0], dtype=np.int64)
        same = same[(self._genre_mask[same] & bit) != 0]
        # add lead actors until the description matches this film only
        stars: list[str] = []
        for lead in [None, *leads[:2]]:
            if lead is not None:
                stars.append(lead)
            match = [r for r in same.tolist() if self._year[r] == year
                     and all(s in self._cast[r] for s in stars)]
            if match == [i]:
                break
        else:
            return None
        if not stars and leads and rng.random() < 0.7:
            stars.append(leads[0])
        text = _paraphrase_text(year, genre, director, stars, rng).lower()
        rel = {int(r): 1 for r in same.tolist()}
        rel[i] = 4
        return text, rel

    def _make_person_attribute(self, rng):
        p = self._samplers["person_attribute"].draw(rng)
        name, films = self._people[p], self._person_films[p]
        ok = films[(self._genre_mask[films] != 0) & (self._decade[films] > 0)]
        f = int(ok[_Sampler(self._film_weight[ok]).draw(rng)])
        gs = sorted(set(self._genres[f]))
        genre = gs[int(rng.integers(len(gs)))]
        decade = int(self._decade[f])
        in_genre = films[(self._genre_mask[films] & self._genre_bit[genre]) != 0]
        full = self._decade[in_genre] == decade
        grades = np.where(full, np.where(self._popular[in_genre], 4, 3), 1)
        rel = dict(zip(in_genre.tolist(), grades.tolist(), strict=True))
        form = int(rng.integers(3))
        if form == 0:
            text = f"{name} {genre} {decade}s"
        elif form == 1:
            text = f"{genre} films with {name} {decade}s"
        else:
            text = f"{name} {genre} movies from the {decade}s"
        return text.lower(), rel


# ---------------------------------------------------------------------- helpers
def _as_year(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def _check_count(name: str, value: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an int >= 1. Got {value!r} instead.")


def _check_type_weights(weights: Mapping[str, float]) -> dict[str, float]:
    unknown = [k for k in weights if k not in QTYPES]
    if unknown:
        raise ValueError(
            f"Unknown query type(s) {', '.join(map(repr, unknown))} in type_weights; "
            f"valid types: {', '.join(QTYPES)}"
        )
    out = {}
    for k, w in weights.items():
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not np.isfinite(w) or w < 0:
            raise ValueError(f"type_weights[{k!r}] must be a finite number >= 0. Got {w!r} instead.")
        out[k] = float(w)
    if sum(out.values()) <= 0:
        raise ValueError(f"type_weights must give some type a positive weight. Got {dict(weights)!r}.")
    return out


def _edit(word: str, rng: np.random.Generator) -> str:
    """One character edit of ``word`` (len >= 4) that always changes it."""
    op = int(rng.integers(4))
    pos = int(rng.integers(len(word)))
    if op == 0:  # swap two neighbouring, different letters
        pairs = [j for j in range(len(word) - 1) if word[j] != word[j + 1]]
        if pairs:
            j = pairs[int(rng.integers(len(pairs)))]
            return word[:j] + word[j + 1] + word[j] + word[j + 2:]
        op = 1
    if op == 1:  # delete
        return word[:pos] + word[pos + 1:]
    if op == 2:  # insert
        ch = _ALPHABET[int(rng.integers(26))]
        return word[:pos] + ch + word[pos:]
    choices = [c for c in _ALPHABET if c != word[pos]]  # substitute
    return word[:pos] + choices[int(rng.integers(len(choices)))] + word[pos + 1:]


def _attribute_text(key: tuple, rng: np.random.Generator) -> str:
    kind, genre = key[0], key[1]
    form = int(rng.integers(2))
    if kind == "genre_decade":
        dec = key[2]
        text = (f"{genre} films {dec}s", f"{genre} movies from the {dec}s")[form]
    elif kind == "genre_year":
        year = key[2]
        text = (f"{genre} from {year}", f"{year} {genre} films")[form]
    elif kind == "language_genre":
        lang = key[2]
        text = (f"{lang} {genre} films", f"{genre} movies in {lang}")[form]
    elif kind == "language_genre_decade":
        lang, dec = key[2], key[3]
        text = (f"{lang} {genre} {dec}s", f"{genre} in {lang} from the {dec}s")[form]
    elif kind == "country_genre":
        country = key[2]
        text = (f"{genre} films from {country}", f"{country} {genre} movies")[form]
    else:
        country, dec = key[2], key[3]
        text = (f"{genre} films from {country} {dec}s", f"{dec}s {genre} from {country}")[form]
    return text.lower()


def _paraphrase_text(year: int, genre: str, director: str, stars: Sequence[str],
                     rng: np.random.Generator) -> str:
    starring = " and ".join(stars)
    form = int(rng.integers(3))
    if form == 0:
        text = f"the {year} {genre} film directed by {director}"
        return text + (f" starring {starring}" if stars else "")
    if form == 1:
        text = f"{genre} movie from {year} by {director}"
        return text + (f" with {starring}" if stars else "")
    text = f"{director} {year} {genre} film"
    return text + (f" starring {starring}" if stars else "")


def write_queries_and_qrels(queries: Sequence[SimQuery], catalog: Catalog,
                            queries_path: str | os.PathLike, qrels_path: str | os.PathLike) -> None:
    """Write queries as ``{"qid","query","qtype"}`` JSONL and their grades as TREC qrels.

    Qrels use the catalog's external ids, so ``ltrr retrieve``/``evaluate`` can run on
    generated queries. A qid repeated in a stream is written once; a qid reused with another
    text is an error.
    """
    texts: dict[str, SimQuery] = {}
    for q in queries:
        prev = texts.setdefault(q.qid, q)
        if prev.text != q.text:
            raise ValueError(f"qid {q.qid!r} is used for two texts: {prev.text!r} and {q.text!r}")
    n = len(catalog)
    for q in texts.values():
        bad = [r for r in q.relevant if not 0 <= r < n]
        if bad:
            raise ValueError(f"qid {q.qid!r} names rows outside the catalog (size {n}): {bad[:5]}")
    qlines = [json.dumps({"qid": q.qid, "query": q.text, "qtype": q.qtype}, ensure_ascii=False)
              for q in texts.values()]
    rlines = [f"{q.qid} 0 {catalog.ids[r]} {g}"
              for q in texts.values()
              for r, g in sorted(q.relevant.items(), key=lambda rg: (-rg[1], rg[0]))]
    _write_lines(Path(queries_path), qlines)
    _write_lines(Path(qrels_path), rlines)


def _write_lines(path: Path, lines: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.writelines(line + "\n" for line in lines)
    os.replace(tmp, path)
