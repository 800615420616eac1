"""Query understanding: tag spans of a query with catalog fields and values.

The tagger learns its dictionaries from the catalog itself: every genre, year, decade, language,
country and person (director, cast, writer) becomes a *value* with one or more *surface forms*
(normalized text that names it: "war" -> genre War, "comedies" -> Comedy, "90s" -> decade 1990,
"french" -> language French and, as a weaker variant, country France). A value's items are one
row of a sparse ``values x items`` matrix, so a conjunction of slots is one sparse product.

Tagging a query enumerates its token n-grams, looks each up exactly (a hash lookup per n-gram,
never a loop over the dictionary) and, for alphabetic n-grams with no exact match, fuzzily
through a character-trigram index (one sparse product for the whole batch, then an edit-distance
check on the few best candidates). A beam search over segmentations turns spans into
interpretations whose likelihood is the product of the span confidences times a penalty per
query word left unexplained; words such as "films", "from", "the" are free.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ltrr.catalog import Catalog
from ltrr.text import ENGLISH_STOP_WORDS, fold_accents

_TOKEN = re.compile(r"\w+")
_ALPHA = re.compile(r"^[a-z ]+$")

#: the slot fields the tagger knows, in display order
FIELDS = ("person", "genre", "year", "decade", "language", "country")

#: query words that carry no field value but are normal in fielded queries ("films from the 90s")
FILLER_WORDS = frozenset(ENGLISH_STOP_WORDS | {
    "film", "films", "movie", "movies", "directed", "director", "starring", "starred", "featuring",
    "feat", "made", "cinema", "picture", "pictures", "best", "good", "top", "era", "decade",
    "year", "language", "spoken", "set", "show", "shows",
})

# Morphological variants of genre names that the catalog cannot teach (plurals are generated).
_GENRE_VARIANTS: Mapping[str, tuple[str, ...]] = {
    "comedy": ("comedic", "funny"),
    "romance": ("romantic", "romcom", "love story"),
    "sci fi": ("science fiction", "scifi", "sf"),
    "animation": ("animated", "cartoon", "cartoons", "anime"),
    "documentary": ("doc", "docs", "docu"),
    "biography": ("biographical", "biopic", "biopics"),
    "history": ("historical", "period"),
    "sport": ("sports", "sporting"),
    "war": ("wartime",),
    "horror": ("scary",),
    "family": ("kids", "children"),
    "crime": ("criminal", "gangster", "gangsters"),
    "musical": ("musicals",),
    "music": ("musician", "concert"),
    "thriller": ("suspense",),
    "mystery": ("whodunit", "detective"),
}

# Adjectives and short names of countries (the catalog names countries, queries use adjectives).
_COUNTRY_VARIANTS: Mapping[str, tuple[str, ...]] = {
    "united states": ("american", "us", "usa", "america", "hollywood"),
    "united kingdom": ("british", "uk", "england", "english", "britain"),
    "france": ("french",), "germany": ("german",), "italy": ("italian",), "japan": ("japanese",),
    "spain": ("spanish",), "india": ("indian", "bollywood"), "canada": ("canadian",),
    "australia": ("australian",), "mexico": ("mexican",), "sweden": ("swedish",),
    "denmark": ("danish",), "norway": ("norwegian",), "finland": ("finnish",),
    "south korea": ("korean", "korea"), "people s republic of china": ("chinese", "china"),
    "hong kong": ("hk",), "russia": ("russian",), "soviet union": ("soviet", "ussr"),
    "brazil": ("brazilian",), "ireland": ("irish",), "iran": ("iranian", "persian"),
    "israel": ("israeli",), "netherlands": ("dutch", "holland"), "belgium": ("belgian",),
    "switzerland": ("swiss",), "austria": ("austrian",), "argentina": ("argentinian", "argentine"),
    "poland": ("polish",), "new zealand": ("kiwi",), "south africa": ("south african",),
    "czech republic": ("czech",), "hungary": ("hungarian",), "romania": ("romanian",),
    "portugal": ("portuguese",), "taiwan": ("taiwanese",), "thailand": ("thai",),
    "iceland": ("icelandic",), "greece": ("greek",), "turkey": ("turkish",),
}


def normalize(text: str) -> list[str]:
    """Lowercased, accent-folded ``\\w+`` tokens (the tagger's and the dictionary's analyzer)."""
    return _TOKEN.findall(fold_accents(text.lower()))


def _plurals(word: str) -> list[str]:
    if word.endswith("y") and len(word) > 3 and word[-2] not in "aeiou":
        return [word[:-1] + "ies"]
    if word.endswith(("s", "x", "ch", "sh")):
        return [word + "es"]
    return [word + "s"]


def trigrams(text: str) -> list[str]:
    """Character trigrams of `` text `` (padded with one space each side)."""
    s = f" {text} "
    return [s[i:i + 3] for i in range(len(s) - 2)]


def edit_distance(a: str, b: str, limit: int) -> int:
    """Levenshtein distance of ``a`` and ``b``, or ``limit + 1`` once it must exceed ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
        if min(cur) > limit:
            return limit + 1
        prev = cur
    return prev[-1]


@dataclass(frozen=True)
class Slot:
    """One tagged span: ``field`` = ``value``, found from query tokens ``start:end``.

    ``weight`` is the span's confidence: 1 for a canonical name, less for a variant ("french" as
    the country France) and for each character edit of a fuzzy match (``edits``).
    """

    field: str
    value: str
    value_id: int
    start: int
    end: int
    text: str
    weight: float
    edits: int = 0


@dataclass(frozen=True)
class Interpretation:
    """One reading of a query: a conjunction of slots with its likelihood.

    ``likelihood`` is the product of the slots' confidences and of a penalty for every content
    word left unexplained (in (0, 1]); ``probability`` normalizes it over the query's readings,
    the empty one included. ``dropped`` lists the slots a *relaxed* reading left out (its
    likelihood is discounted by how specific they were).
    """

    slots: tuple[Slot, ...]
    likelihood: float
    probability: float
    dropped: tuple[Slot, ...] = ()

    @property
    def fields(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for s in self.slots:
            out.setdefault(s.field, []).append(s.value)
        return out

    def describe(self) -> str:
        text = " & ".join(f"{s.field}={s.value}" for s in self.slots)
        return text + (" (relaxed: -" + ", -".join(f"{s.field}={s.value}" for s in self.dropped) + ")"
                       if self.dropped else "")

    def to_dict(self) -> dict[str, Any]:
        return {"slots": [{"field": s.field, "value": s.value, "text": s.text, "weight": s.weight,
                           "edits": s.edits, "span": [s.start, s.end]} for s in self.slots],
                "likelihood": self.likelihood, "probability": self.probability,
                "dropped": [f"{s.field}={s.value}" for s in self.dropped]}


@dataclass(frozen=True)
class TaggerConfig:
    """Knobs of :class:`FieldTagger` (the strategy passes its params through)."""

    fields: tuple[str, ...] = FIELDS
    person_fields: tuple[str, ...] = ("directors", "cast", "writers")
    role_weights: tuple[float, ...] = (1.0, 0.6, 0.4)
    genre_field: str = "genres"
    year_field: str = "year"
    language_field: str = "languages"
    country_field: str = "countries"
    min_name_tokens: int = 2
    variant_weight: float = 0.6
    unmatched_penalty: float = 0.15
    fuzzy: bool = True
    fuzzy_penalty: float = 0.5
    fuzzy_min_chars: int = 5
    fuzzy_min_dice: float = 0.5
    fuzzy_candidates: int = 4
    trigram_max_df: float = 0.02
    max_edits: int = 2
    max_span_tokens: int = 6
    max_query_tokens: int = 24
    beam: int = 16


class FieldTagger:
    """Dictionaries learned from a catalog, and the tagging of queries against them.

    Learned state: ``value_field_`` (field code per value), ``value_name_`` (canonical names),
    ``items_`` (``values x items`` 0/1 CSR), ``roles_`` (``values x items`` role weight of a
    person), ``surface_`` (normalized surface form -> ``[(value id, weight), ...]``).
    """

    def __init__(self, config: TaggerConfig):
        self.config = config
        unknown = [f for f in config.fields if f not in FIELDS]
        if unknown:
            raise ValueError(f"Unknown tagger field(s) {unknown}; known fields: {', '.join(FIELDS)}")

    # ------------------------------------------------------------------ learning
    def fit(self, catalog: Catalog) -> FieldTagger:
        c = self.config
        want = set(c.fields)
        names: list[str] = []
        codes: list[int] = []
        index: dict[tuple[int, str], int] = {}
        rows: list[int] = []
        cols: list[int] = []
        role_w: list[float] = []

        def vid(field: str, value: str) -> int:
            key = (FIELDS.index(field), value)
            got = index.get(key)
            if got is None:
                got = index[key] = len(names)
                names.append(value)
                codes.append(key[0])
            return got

        def add(field: str, value: str, item: int, w: float = 1.0) -> None:
            rows.append(vid(field, value))
            cols.append(item)
            role_w.append(w)

        for i, f in enumerate(catalog.fields):
            if "person" in want:
                for field, w in zip(c.person_fields, c.role_weights, strict=False):
                    for name in _as_list(f.get(field)):
                        if len(normalize(name)) >= c.min_name_tokens:
                            add("person", name, i, w)
            if "genre" in want:
                for g in _as_list(f.get(c.genre_field)):
                    add("genre", g, i)
            year = _as_year(f.get(c.year_field))
            if year > 0:
                if "year" in want:
                    add("year", str(year), i)
                if "decade" in want:
                    add("decade", str(year // 10 * 10), i)
            if "language" in want:
                for lang in _as_list(f.get(c.language_field)):
                    add("language", lang, i)
            if "country" in want:
                for country in _as_list(f.get(c.country_field)):
                    add("country", country, i)
        n_values, n_items = len(names), len(catalog)
        r = np.asarray(rows, dtype=np.int64)
        k = np.asarray(cols, dtype=np.int64)
        wt = np.asarray(role_w, dtype=np.float64)
        # one entry per (value, item): a person credited twice keeps the best role
        order = np.lexsort((-wt, k, r))
        first = np.ones(order.size, dtype=bool)
        first[1:] = (r[order][1:] != r[order][:-1]) | (k[order][1:] != k[order][:-1])
        keep = order[first]
        roles = sp.csr_matrix((wt[keep], (r[keep], k[keep])), shape=(n_values, n_items))
        roles.sort_indices()
        self.value_field_ = np.asarray(codes, dtype=np.int64)
        self.value_name_ = names
        self.roles_ = roles
        self.items_ = sp.csr_matrix((np.ones(roles.nnz, dtype=np.float32), roles.indices.copy(),
                                     roles.indptr.copy()), shape=roles.shape)
        self._build_surfaces(catalog)
        self._build_derived()
        return self

    def _build_surfaces(self, catalog: Catalog) -> None:
        c = self.config
        surface: dict[str, dict[int, float]] = {}

        def put(text: str, value_id: int, weight: float) -> None:
            key = " ".join(normalize(text))
            if key:
                slot = surface.setdefault(key, {})
                slot[value_id] = max(slot.get(value_id, 0.0), weight)

        df = np.diff(self.items_.indptr)
        decade_names: dict[str, list[int]] = {}
        for v, (code, name) in enumerate(zip(self.value_field_.tolist(), self.value_name_, strict=True)):
            field = FIELDS[code]
            norm = " ".join(normalize(name))
            put(name, v, 1.0)
            if field == "genre":
                words = norm.split()
                for plural in _plurals(words[-1]) if words else []:
                    put(" ".join([*words[:-1], plural]), v, 1.0)
                for variant in _GENRE_VARIANTS.get(norm, ()):
                    put(variant, v, c.variant_weight)
            elif field == "decade":
                put(f"{name}s", v, 1.0)
                decade_names.setdefault(f"{int(name) % 100:02d}s", []).append(v)
            elif field == "country":
                for variant in _COUNTRY_VARIANTS.get(norm, ()):
                    put(variant, v, c.variant_weight)
        # "90s": the decade with the most films among 1990 / 2090 / ...
        for short, vs in decade_names.items():
            best = max(vs, key=lambda v: (df[v], -v))
            put(short, best, 1.0)
        keys = sorted(surface)
        self.surface_ = {k: sorted(surface[k].items()) for k in keys}
        self.max_span_ = min(c.max_span_tokens, max((len(k.split()) for k in keys), default=1))

    def _build_derived(self) -> None:
        """Rebuildable lookup state: idf per value and the trigram index of the surfaces."""
        c = self.config
        n_items = max(self.items_.shape[1], 1)
        df = np.diff(self.items_.indptr).astype(np.float64)
        self.idf_ = np.log((n_items + 1.0) / (df + 1.0)) + 1.0
        keys = [k for k in self.surface_ if len(k) >= c.fuzzy_min_chars and _ALPHA.match(k)]
        # a typo makes a word the dictionary does not know; grams of known words only skip fuzzy
        self._known_words = frozenset(w for k in self.surface_ for w in k.split())
        # one trigram index per token count: a typo edits letters, not the number of words, so a
        # one-word span is compared with the few one-word values only, a name with names
        by_len: dict[int, list[str]] = {}
        for k in keys:
            by_len.setdefault(min(len(k.split()), 4), []).append(k)
        self._tri = ({n: _TrigramIndex(ks, c.trigram_max_df) for n, ks in by_len.items()}
                     if c.fuzzy else {})

    # ------------------------------------------------------------------ tagging
    def tag(self, texts: Sequence[str]) -> list[list[Interpretation]]:
        """Interpretations of each text, most likely first (empty: no field recognized)."""
        c = self.config
        toks = [normalize(t)[: c.max_query_tokens] for t in texts]
        spans: list[list[list[Slot]]] = [[[] for _ in t] for t in toks]
        fuzzy_grams: list[tuple[int, int, int, str]] = []
        for qi, tokens in enumerate(toks):
            n = len(tokens)
            for i in range(n):
                for j in range(i + 1, min(n, i + self.max_span_) + 1):
                    gram = " ".join(tokens[i:j])
                    hits = self.surface_.get(gram)
                    if hits:
                        spans[qi][i].extend(self._slot(v, w, i, j, gram, 0) for v, w in hits)
                    elif (c.fuzzy and len(gram) >= c.fuzzy_min_chars and _ALPHA.match(gram)
                          and tokens[i] not in FILLER_WORDS and tokens[j - 1] not in FILLER_WORDS
                          and not all(t in self._known_words for t in tokens[i:j])):
                        fuzzy_grams.append((qi, i, j, gram))
        for qi, i, j, gram, key, edits in self._fuzzy(fuzzy_grams):
            for v, w in self.surface_[key]:
                spans[qi][i].append(self._slot(v, w * c.fuzzy_penalty ** edits, i, j, gram, edits))
        return [self._segment(tokens, sp_) for tokens, sp_ in zip(toks, spans, strict=True)]

    def _slot(self, value_id: int, weight: float, i: int, j: int, text: str, edits: int) -> Slot:
        return Slot(FIELDS[int(self.value_field_[value_id])], self.value_name_[value_id], int(value_id),
                    i, j, text, float(weight), edits)

    def _fuzzy(self, grams: list[tuple[int, int, int, str]]) -> Iterable[tuple]:
        """Best fuzzy surface per n-gram: a batched trigram-overlap product per token count, then
        an edit-distance check of the few best candidates."""
        c = self.config
        groups: dict[int, list[int]] = {}
        for g, (_qi, i, j, _gram) in enumerate(grams):
            groups.setdefault(min(j - i, 4), []).append(g)
        best: dict[int, tuple[int, str]] = {}
        for n_tok, members in groups.items():
            index = self._tri.get(n_tok)
            if index is None:
                continue
            for gi, key in index.candidates([grams[g][3] for g in members], c.fuzzy_min_dice,
                                            c.fuzzy_candidates):
                g = members[gi]
                gram = grams[g][3]
                limit = 1 if len(gram) < 9 else c.max_edits
                e = edit_distance(gram, key, limit)
                if 0 < e <= limit and e < best.get(g, (limit + 1, ""))[0]:
                    best[g] = (e, key)
        return [(*grams[g][:4], key, e) for g, (e, key) in sorted(best.items())]

    def _segment(self, tokens: list[str], spans: list[list[Slot]]) -> list[Interpretation]:
        """Beam search over segmentations; readings with at least one slot, best first."""
        c = self.config
        n = len(tokens)
        if n == 0 or not any(spans):
            return []
        content = [t not in FILLER_WORDS for t in tokens]
        beams: list[list[tuple[float, tuple[Slot, ...]]]] = [[] for _ in range(n + 1)]
        beams[0] = [(1.0, ())]
        for i in range(n):
            if not beams[i]:
                continue
            cur = sorted(beams[i], key=lambda s: -s[0])[: c.beam]
            skip = c.unmatched_penalty if content[i] else 1.0
            for w, slots in cur:
                beams[i + 1].append((w * skip, slots))
                for s in spans[i]:
                    beams[s.end].append((w * s.weight, (*slots, s)))
        best: dict[frozenset, tuple[float, tuple[Slot, ...]]] = {}
        for w, slots in beams[n]:
            key = frozenset(s.value_id for s in slots)
            if key not in best or w > best[key][0]:
                best[key] = (w, slots)
        total = sum(w for w, _ in best.values())
        readings = sorted(((w, s) for key, (w, s) in best.items() if key), key=lambda ws: (-ws[0], _order_key(ws[1])))
        return [Interpretation(slots, float(w), float(w / total)) for w, slots in readings[: c.beam]]

    def relax(self, interp: Interpretation, penalty: float, depth: int = 1) -> list[Interpretation]:
        """Readings with 1..``depth`` slots dropped (at least one kept), each discounted by
        ``penalty`` per dropped slot and by the share of specificity (idf) kept."""
        n = len(interp.slots)
        if n < 2:
            return []
        idf = np.array([self.idf_[s.value_id] for s in interp.slots])
        out = []
        for d in range(1, min(depth, n - 1) + 1):
            for drop in combinations(range(n), d):
                kept = tuple(s for i, s in enumerate(interp.slots) if i not in drop)
                share = 1.0 - idf[list(drop)].sum() / idf.sum()
                factor = penalty ** d * share
                out.append(Interpretation(kept, float(interp.likelihood * factor),
                                          float(interp.probability * factor),
                                          (*interp.dropped, *(interp.slots[i] for i in drop))))
        return sorted(out, key=lambda it: -it.likelihood)

    # ------------------------------------------------------------------ persistence
    def save(self, directory: Path) -> None:
        sp.save_npz(directory / "tagger_roles.npz", self.roles_, compressed=False)
        np.save(directory / "tagger_value_field.npy", self.value_field_, allow_pickle=False)
        blob = {"values": self.value_name_,
                "surfaces": {k: [[int(v), float(w)] for v, w in hits] for k, hits in self.surface_.items()}}
        (directory / "tagger_dictionary.json").write_text(json.dumps(blob, ensure_ascii=False), encoding="utf-8")

    def load(self, directory: Path) -> FieldTagger:
        self.roles_ = sp.load_npz(directory / "tagger_roles.npz").tocsr()
        self.value_field_ = np.load(directory / "tagger_value_field.npy", allow_pickle=False)
        blob = json.loads((directory / "tagger_dictionary.json").read_text(encoding="utf-8"))
        self.value_name_ = list(blob["values"])
        self.surface_ = {k: [(int(v), float(w)) for v, w in hits] for k, hits in blob["surfaces"].items()}
        self.items_ = sp.csr_matrix((np.ones(self.roles_.nnz, dtype=np.float32), self.roles_.indices,
                                     self.roles_.indptr), shape=self.roles_.shape)
        self.max_span_ = min(self.config.max_span_tokens,
                             max((len(k.split()) for k in self.surface_), default=1))
        self._build_derived()
        return self


def _order_key(slots: tuple[Slot, ...]) -> tuple:
    return tuple((s.start, s.value_id) for s in slots)


def _as_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if v is not None and str(v).strip()]
    return [str(value)]


def _as_year(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


class _TrigramIndex:
    """Character-trigram candidate index over surface keys (keys x trigrams, trigram-major).

    Very common trigrams ("an ", " jo") find everything and decide nothing, so trigrams in more
    than ``max_df`` of the keys are left out of the index (the edit-distance check decides).
    """

    def __init__(self, keys: list[str], max_df: float):
        self.keys = keys
        per_key = [set(trigrams(k)) for k in keys]
        vocab: dict[str, int] = {}
        cols = [vocab.setdefault(t, len(vocab)) for s in per_key for t in s]
        lengths = np.fromiter(map(len, per_key), dtype=np.int64, count=len(per_key))
        rows = np.repeat(np.arange(len(keys)), lengths)
        m = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), (rows, np.asarray(cols, dtype=np.int64))),
                          shape=(len(keys), len(vocab)))
        col_df = np.bincount(m.indices, minlength=len(vocab))
        keep_col = col_df <= max(int(max_df * len(keys)), 50)
        remap = np.cumsum(keep_col) - 1
        self.vocab = {t: int(remap[j]) for t, j in vocab.items() if keep_col[j]}
        self.matrix = m[:, np.flatnonzero(keep_col)].T.tocsr()
        self.lengths = lengths.astype(np.float64)

    def candidates(self, grams: list[str], min_dice: float, per_gram: int) -> list[tuple[int, str]]:
        """Up to ``per_gram`` keys per gram with trigram Dice >= ``min_dice``, best first."""
        q_sets = [set(trigrams(g)) for g in grams]
        cols = [[self.vocab[t] for t in s if t in self.vocab] for s in q_sets]
        lengths = np.fromiter(map(len, cols), dtype=np.int64, count=len(cols))
        if lengths.sum() == 0:
            return []
        # gather the grams' trigram posting lists and count shared trigrams per (gram, key)
        tri = np.fromiter((x for cs in cols for x in cs), dtype=np.int64, count=int(lengths.sum()))
        pos, owner = postings(self.matrix.indptr, tri)
        gram_of = np.repeat(np.arange(len(grams)), lengths)[owner]
        n_keys = len(self.keys)
        pair, counts = np.unique(gram_of * n_keys + self.matrix.indices[pos], return_counts=True)
        shared = _Pairs(pair // n_keys, pair % n_keys, counts.astype(np.float64))
        q_len = np.array([len(s) for s in q_sets], dtype=np.float64)
        dice = 2.0 * shared.data / (q_len[shared.row] + self.lengths[shared.col])
        ok = dice >= min_dice
        r, col, d = shared.row[ok], shared.col[ok], dice[ok]
        order = np.lexsort((col, -d, r))
        r, col = r[order], col[order]
        first = np.searchsorted(r, r, side="left")
        keep = (np.arange(r.size) - first) < per_gram
        return [(gi, self.keys[k]) for gi, k in zip(r[keep].tolist(), col[keep].tolist(), strict=True)]


class _Pairs:
    """(row, col, data) triples of a sparse count table."""

    def __init__(self, row: np.ndarray, col: np.ndarray, data: np.ndarray):
        self.row, self.col, self.data = row, col, data


def postings(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the entries of CSR ``rows`` (concatenated) and the index of the row each
    came from: a vectorized gather of several posting lists."""
    rows = np.asarray(rows, dtype=np.int64)
    starts = indptr[rows].astype(np.int64)
    lens = indptr[rows + 1].astype(np.int64) - starts
    owner = np.repeat(np.arange(rows.size), lens)
    offsets = np.cumsum(lens) - lens
    pos = np.arange(int(lens.sum()), dtype=np.int64) - np.repeat(offsets - starts, lens)
    return pos, owner
