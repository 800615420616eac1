"""Catalog: columnar storage, id lookup, text composition, save/load (memory-mapped, checked)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ltrr.catalog import Catalog, IdIndex, JsonColumn, StringColumn, fnv1a64
from ltrr.errors import DataError, PersistenceError

ROOT = Path(__file__).resolve().parents[2]
MOVIES = ROOT / "data" / "movies" / "catalog.jsonl"

RECORDS = [
    {"id": "a", "title": "Amélie", "text": "a Paris café", "fields": {"year": 2001, "cast": ["Audrey Tautou"]},
     "popularity": 3.0},
    {"id": "b", "title": "", "text": "", "popularity": 0.0},
    {"id": "c", "title": "Heat", "text": "", "fields": {"year": 1995.0, "genres": ["Crime", "Drama"]}},
    {"id": "日本", "title": "七人の侍", "text": "samurai", "fields": {"runtime": 207.5}},
]


@pytest.fixture(scope="module")
def small() -> Catalog:
    return Catalog.from_records(RECORDS)


def test_columns_read_back_what_was_written(small) -> None:
    assert len(small) == 4
    assert list(small.ids) == ["a", "b", "c", "日本"]
    assert small.titles[0] == "Amélie" and small.titles[-1] == "七人の侍"
    assert small.texts[1] == "" and small.fields[1] == {}
    assert small.fields[0] == {"year": 2001, "cast": ["Audrey Tautou"]}
    np.testing.assert_array_equal(small.popularity, [3.0, 0.0, 0.0, 0.0])
    assert list(small.titles[1:3]) == ["", "Heat"] and list(small.ids[::2]) == ["a", "c"]
    with pytest.raises(IndexError, match="row 4 is out of range for a column of 4 items"):
        small.titles[4]
    # every read is a fresh object: mutating it does not change the catalog
    small.fields[0]["year"] = 1900
    assert small.fields[0]["year"] == 2001


def test_catalog_is_immutable(small) -> None:
    with pytest.raises(AttributeError, match="Catalog is immutable; cannot set 'ids'"):
        small.ids = ("x",)


def test_ids_map_to_rows(small) -> None:
    np.testing.assert_array_equal(small.rows_of(["c", "zz", "日本", "a"]), [2, -1, 3, 0])
    assert small.index.get("b") == 1 and small.index.get("nope") is None and small.index.get(3) is None
    assert "日本" in small.index and small.index["c"] == 2
    with pytest.raises(KeyError):
        small.index["nope"]
    assert small.rows_of([]).shape == (0,)


def test_id_lookup_is_exact_when_hashes_collide() -> None:
    ids = StringColumn.of(["x", "y", "z"])
    # force every id onto the hash of "y": the lookup must compare the ids in that run
    h = fnv1a64(StringColumn.of(["y"]))[0]
    assert IdIndex(ids, np.full(3, h), np.arange(3)).get("y") == 1
    assert IdIndex(ids, np.full(3, h), np.array([2, 0, 1])).get("y") == 1
    assert IdIndex(StringColumn.of(["x", "z"]), np.full(2, h), np.arange(2)).get("y") is None
    assert IdIndex(ids, np.full(3, h), np.arange(3)).duplicate() is None  # equal hashes, distinct ids
    assert IdIndex(StringColumn.of(["x", "y", "x"])).duplicate() == "x"


def test_fnv1a_matches_the_published_vectors() -> None:
    # FNV-1a 64-bit test vectors (empty string, "a", "foobar")
    got = fnv1a64(StringColumn.of(["", "a", "foobar"]))
    assert got.tolist() == [0xCBF29CE484222325, 0xAF63DC4C8601EC8C, 0x85944171F73967E8]


def test_duplicate_ids_are_rejected_by_name() -> None:
    with pytest.raises(DataError, match=r"Catalog ids must be unique; 'a' is held by two items"):
        Catalog.from_records([{"id": "a"}, {"id": "b"}, {"id": "a"}])


def test_from_jsonl_names_file_and_line_of_a_duplicate(tmp_path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "a"}\n')
    with pytest.raises(DataError, match=r"c.jsonl:3: duplicate id 'a' \(first on line 1\)"):
        Catalog.from_jsonl(path)
    path.write_text('{"id": "a", "popularity": "high"}\n')
    with pytest.raises(DataError, match=r"c.jsonl:1: field 'popularity' must be float, got str"):
        Catalog.from_jsonl(path)


def _as_text(value) -> str:
    """The documented composition rule, written out independently of the catalog's code."""
    if value is None or value == "":
        return ""
    if isinstance(value, list):
        return " ".join(_as_text(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_compose_joins_the_named_fields_as_documented(small) -> None:
    fields = ["title", "cast", "genres", "year", "runtime", "text"]
    expected = []
    for r in RECORDS:
        f = r.get("fields") or {}
        parts = [_as_text(r.get("title")), *(_as_text(f.get(n)) for n in fields[1:-1]), _as_text(r.get("text"))]
        expected.append(" ".join(p for p in parts if p))
    assert small.compose(fields) == expected
    assert expected[2] == "Heat Crime Drama 1995" and expected[3] == "七人の侍 207.5 samurai"
    assert small.compose(fields, range(1, 3)) == expected[1:3]
    assert [small.compose_one(i, fields) for i in range(4)] == expected
    assert [t for chunk in small.compose_chunks(fields, chunk=3) for t in chunk] == expected


def test_movie_catalog_composes_like_its_json(tmp_path) -> None:
    movies = Catalog.from_jsonl(MOVIES, limit=300)
    raw = [json.loads(line) for line in MOVIES.read_text(encoding="utf-8").splitlines()[:300]]
    fields = ["title", "directors", "cast", "year"]
    want = [" ".join(p for p in [_as_text(r["title"]), *(_as_text(r["fields"].get(n)) for n in fields[1:])] if p)
            for r in raw]
    assert movies.compose(fields) == want
    assert [movies.fields[i] for i in range(300)] == [r["fields"] for r in raw]


def test_extend_appends_and_rejects_repeats(small) -> None:
    more = Catalog.from_records([{"id": "d", "title": "New", "popularity": 9.0}])
    grown = small.extend(more)
    assert list(grown.ids) == ["a", "b", "c", "日本", "d"] and grown.titles[4] == "New"
    assert grown.rows_of(["d", "a"]).tolist() == [4, 0] and grown.popularity[4] == 9.0
    with pytest.raises(DataError, match=r"Items already in the catalog: \['c'\] \(1 in all\)"):
        small.extend(Catalog.from_records([{"id": "c"}]))


def test_save_load_is_columnar_memory_mapped_and_equal(small, tmp_path) -> None:
    small.save(tmp_path / "cat")
    files = sorted(p.name for p in (tmp_path / "cat").iterdir())
    assert "manifest.json" in files and all(f.endswith((".npy", ".json")) for f in files)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dir left
    loaded = Catalog.load(tmp_path / "cat")
    assert isinstance(loaded.texts.data, np.memmap) and not loaded.popularity.flags.owndata  # mapped, not read
    assert isinstance(loaded.fields, JsonColumn)
    for name in ("ids", "titles", "texts", "fields"):
        assert list(getattr(loaded, name)) == list(getattr(small, name))
    np.testing.assert_array_equal(loaded.popularity, small.popularity)
    assert loaded.rows_of(["日本", "x"]).tolist() == [3, -1]
    Catalog.verify(tmp_path / "cat")  # full digests match
    small.save(tmp_path / "cat")  # overwriting is atomic too
    assert list(Catalog.load(tmp_path / "cat", verify="full").ids) == list(small.ids)


def test_load_rejects_other_components(tmp_path, small) -> None:
    from strategies.bm25 import BM25

    BM25().fit(small).save(tmp_path / "bm25")
    with pytest.raises(PersistenceError, match=r"is a saved 'bm25', not a saved 'catalog'"):
        Catalog.load(tmp_path / "bm25")
    with pytest.raises(PersistenceError, match="not a saved ltrr component"):
        Catalog.load(tmp_path / "nothing")


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture()
def saved(tmp_path) -> Path:
    # long texts, so a texts buffer has bytes outside the sampled blocks
    Catalog.from_records([{"id": str(i), "text": f"word{i} " * 400} for i in range(40)]).save(tmp_path / "c")
    return tmp_path / "c"


def test_truncated_file_is_caught_on_load(saved) -> None:
    path = saved / "texts.utf8.npy"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(PersistenceError, match=r"texts.utf8.npy: \d+ bytes, the manifest says \d+ \(truncated"):
        Catalog.load(saved)


def test_corruption_in_a_sampled_block_is_caught_on_load(saved) -> None:
    _flip(saved / "texts.utf8.npy", 200)  # inside the first sampled 4 KiB
    with pytest.raises(PersistenceError, match=r"texts.utf8.npy: does not match its fingerprint"):
        Catalog.load(saved)


def test_corruption_between_samples_is_caught_by_full_verification(saved) -> None:
    path = saved / "texts.utf8.npy"
    size = path.stat().st_size
    second = (size - 4096) // 15  # where the second of 16 evenly spaced 4 KiB samples starts
    assert second > 4096 + 64
    _flip(path, (4096 + second) // 2)  # between the first and second samples
    Catalog.load(saved)  # the quick check reads samples only: it cannot see this byte
    with pytest.raises(PersistenceError, match=r"texts.utf8.npy: does not match its SHA-256"):
        Catalog.verify(saved)
    with pytest.raises(PersistenceError, match="SHA-256"):
        Catalog.load(saved, verify="full")


def test_inconsistent_offsets_are_caught_even_with_matching_digests(saved) -> None:
    """A file replaced together with its manifest entry: the structural checks still catch it."""
    from ltrr.store.persist import file_record

    path = saved / "titles.offsets.npy"
    offsets = np.load(path).copy()
    offsets[5] = offsets[6] + 3  # decreasing: not a valid column
    np.save(path, offsets, allow_pickle=False)
    manifest = json.loads((saved / "manifest.json").read_text())
    manifest["files"][path.name] = file_record(path)
    (saved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PersistenceError, match=r"titles.offsets.npy is corrupt \(offsets must start at 0, never decrease"):
        Catalog.load(saved)
