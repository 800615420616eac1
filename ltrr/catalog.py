"""The item catalog: ids, titles, free text, structured fields and popularity, stored by column.

Items are addressed inside ltrr by their row index (``int64``); external string ids are mapped
at the edges. Text to index is composed from the fields named in config (``text_fields``):
string values as they are, lists joined with spaces, numbers as decimal text. A field is read
wherever a JSONL record holds it: under ``"fields"`` or at the top level next to ``id``/``title``
(``{"id": "b1", "title": "...", "author": "..."}``); naming a text field no item has is an error.

Nothing is held as one Python object per item: every string column is one UTF-8 byte buffer
plus ``int64`` offsets, the structured fields are one compact JSON document per item in the same
layout (decoded when a row is read), popularity is a ``float64`` array, and the id -> row map is
a sorted array of 64-bit FNV-1a hashes of the ids. :meth:`Catalog.save` writes these arrays as
``.npy`` files (no pickle) and :meth:`Catalog.load` memory-maps them, so loading a million items
reads a few kilobytes and the pages a process touches are all it holds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Self, SupportsIndex, TypeVar, cast, overload

import numpy as np

from ltrr.errors import DataError, PersistenceError
from ltrr.io import field as get_field
from ltrr.io import read_jsonl
from ltrr.store.persist import (
    atomic_directory,
    check_files,
    file_record,
    read_manifest,
    write_manifest,
)

DEFAULT_TEXT_FIELDS = ("title", "text")
CATALOG_FORMAT_VERSION = 1
#: the keys of a catalog record that are not structured fields
RECORD_KEYS = ("id", "title", "text", "fields", "popularity")

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_COLUMNS = ("ids", "titles", "texts", "fields")


_V = TypeVar("_V")


class StringColumn(Sequence[_V]):
    """``n`` strings as one UTF-8 buffer (``uint8``) and ``n + 1`` offsets (``int64``); a read
    decodes one (``_V``: ``str`` here, a ``dict`` in :class:`JsonColumn`)."""

    __slots__ = ("data", "offsets")

    def __init__(self, offsets: np.ndarray, data: np.ndarray):
        self.offsets = offsets
        self.data = data

    @classmethod
    def of(cls, values: Iterable[Any]) -> StringColumn:
        builder = _ColumnBuilder()
        for v in values:
            builder.append(cls._encode(v))
        return builder.finish(cls)

    @staticmethod
    def _encode(value: Any) -> str:
        return value

    def __len__(self) -> int:
        return self.offsets.size - 1

    def _raw(self, i: int) -> bytes:
        return bytes(self.data[self.offsets[i]:self.offsets[i + 1]])

    def _decode(self, raw: bytes) -> Any:
        return raw.decode("utf-8")

    @overload
    def __getitem__(self, i: SupportsIndex) -> Any: ...
    @overload
    def __getitem__(self, i: slice) -> Self: ...
    def __getitem__(self, i: SupportsIndex | slice) -> Any:
        if isinstance(i, slice):
            start, stop, step = i.indices(len(self))
            if step != 1:
                return type(self).of(self[r] for r in range(start, stop, step))
            stop = max(stop, start)
            base = self.offsets[start]
            return type(self)(self.offsets[start:stop + 1] - base,
                              self.data[base:self.offsets[stop]])
        n = len(self)
        j = int(i)
        if j < -n or j >= n:
            raise IndexError(f"row {j} is out of range for a column of {n} items")
        return self._decode(self._raw(j % n))

    def __iter__(self) -> Iterator[Any]:
        return self.slice_values(0, len(self))

    def slice_values(self, start: int, stop: int, chunk: int = 65536) -> Iterator[Any]:
        """Decoded values of rows ``start..stop-1``, reading the buffer a chunk at a time."""
        for a in range(start, stop, chunk):
            b = min(a + chunk, stop)
            offs = self.offsets[a:b + 1]
            base = int(offs[0])
            buf = bytes(self.data[base:int(offs[-1])])
            bounds = (offs - base).tolist()
            for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
                yield self._decode(buf[lo:hi])

    def concat(self, other: Self) -> Self:
        end = self.offsets[-1]
        return type(self)(np.concatenate([self.offsets, other.offsets[1:] + end]),
                          np.concatenate([self.data, other.data]))

    @property
    def nbytes(self) -> int:
        return int(self.offsets.nbytes + self.data.nbytes)


_C = TypeVar("_C", bound=StringColumn)


class JsonColumn(StringColumn[dict[str, Any]]):
    """One JSON object per item (``{}`` stored as zero bytes); a read returns a fresh ``dict``."""

    __slots__ = ()

    @staticmethod
    def _encode(value: Mapping[str, Any]) -> str:
        return _dump_fields(value)

    def _decode(self, raw: bytes) -> dict[str, Any]:
        return json.loads(raw) if raw else {}


def _dump_fields(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), ensure_ascii=False, separators=(",", ":")) if value else ""


class _ColumnBuilder:
    """Appends strings to a growing UTF-8 buffer (bounded memory while reading a large file)."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.ends: list[int] = []

    def append(self, value: str) -> None:
        self.buf += value.encode("utf-8")
        self.ends.append(len(self.buf))

    @overload
    def finish(self) -> StringColumn: ...
    @overload
    def finish(self, cls: type[_C]) -> _C: ...
    def finish(self, cls: type[StringColumn] = StringColumn) -> StringColumn:
        offsets = np.zeros(len(self.ends) + 1, dtype=np.int64)
        offsets[1:] = self.ends
        return cls(offsets, np.frombuffer(bytes(self.buf), dtype=np.uint8))


def fnv1a64(column: StringColumn) -> np.ndarray:
    """64-bit FNV-1a hash of every string's UTF-8 bytes, vectorized over the column."""
    lengths = np.diff(column.offsets)
    starts = column.offsets[:-1]
    h = np.full(lengths.size, _FNV_OFFSET, dtype=np.uint64)
    for j in range(int(lengths.max(initial=0))):
        live = np.flatnonzero(lengths > j)
        h[live] = (h[live] ^ column.data[starts[live] + j].astype(np.uint64)) * _FNV_PRIME
    return h


class IdIndex(Mapping[str, int]):
    """External id -> row, as sorted id hashes (``uint64``) and their rows; collisions are
    resolved by comparing the ids themselves, so a lookup is exact."""

    def __init__(self, ids: StringColumn, hashes: np.ndarray | None = None, rows: np.ndarray | None = None):
        self.ids = ids
        if hashes is None or rows is None:
            h = fnv1a64(ids)
            rows = np.argsort(h, kind="stable")
            hashes = h[rows]
        self.hashes = hashes
        self.rows = rows

    def duplicate(self) -> str | None:
        """An id held by two rows, if any."""
        same = np.flatnonzero(self.hashes[1:] == self.hashes[:-1])
        for i in same:
            a, b = int(self.rows[i]), int(self.rows[i + 1])
            if self.ids[a] == self.ids[b]:
                return self.ids[a]
        return None

    def rows_of(self, keys: Sequence[str]) -> np.ndarray:
        if len(keys) == 0:
            return np.empty(0, dtype=np.int64)
        h = fnv1a64(StringColumn.of(str(k) for k in keys))
        lo = np.searchsorted(self.hashes, h, side="left")
        hi = np.searchsorted(self.hashes, h, side="right")
        out = np.full(len(keys), -1, dtype=np.int64)
        for i in np.flatnonzero(hi > lo):
            for r in self.rows[lo[i]:hi[i]]:
                if self.ids[int(r)] == keys[int(i)]:
                    out[i] = r
                    break
        return out

    def get(self, key: Any, default: Any = None) -> Any:
        if not isinstance(key, str):
            return default
        row = int(self.rows_of([key])[0])
        return row if row >= 0 else default

    def __getitem__(self, key: str) -> int:
        row = self.get(key)
        if row is None:
            raise KeyError(key)
        return row

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.ids)


class Catalog:
    """An immutable, column-stored catalog. ``index`` maps an external id to its row.

    Parameters
    ----------
    ids, titles, texts
        One string per item (any sequence, or a :class:`StringColumn`).
    fields
        One mapping per item (any sequence, or a :class:`JsonColumn`).
    popularity
        ``float[n]``.
    """

    __slots__ = ("_field_names", "fields", "ids", "index", "popularity", "texts", "titles")
    ids: StringColumn[str]
    titles: StringColumn[str]
    texts: StringColumn[str]
    fields: JsonColumn
    popularity: np.ndarray
    index: IdIndex
    _field_names: frozenset[str] | None

    def __init__(self, ids: Sequence[str], titles: Sequence[str], texts: Sequence[str],
                 fields: Sequence[Mapping[str, Any]] | JsonColumn, popularity: np.ndarray,
                 index: IdIndex | None = None, field_names: Iterable[str] | None = None):
        set_ = object.__setattr__
        set_(self, "_field_names", None if field_names is None else frozenset(field_names))
        set_(self, "ids", ids if isinstance(ids, StringColumn) else StringColumn.of(map(str, ids)))
        set_(self, "titles", titles if isinstance(titles, StringColumn) else StringColumn.of(titles))
        set_(self, "texts", texts if isinstance(texts, StringColumn) else StringColumn.of(texts))
        set_(self, "fields", fields if isinstance(fields, JsonColumn) else JsonColumn.of(fields))
        set_(self, "popularity", np.asarray(popularity, dtype=np.float64))
        n = len(self.ids)
        if not (len(self.titles) == len(self.texts) == len(self.fields) == self.popularity.size == n):
            raise ValueError("Catalog columns must have one entry per item.")
        if index is None:
            index = IdIndex(self.ids)
            dup = index.duplicate()
            if dup is not None:
                raise DataError(f"Catalog ids must be unique; {dup!r} is held by two items.")
        set_(self, "index", index)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Catalog is immutable; cannot set {name!r}")

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"Catalog({len(self)} items)"

    def rows_of(self, item_ids: Sequence[str]) -> np.ndarray:
        """Row indices of external ids; unknown ids map to -1."""
        return self.index.rows_of(list(item_ids))

    @property
    def field_names(self) -> frozenset[str]:
        """Every key of the items' structured fields (found once, then kept)."""
        if self._field_names is None:
            names: set[str] = set()
            for f in self.fields:
                names.update(f)
            found = frozenset(names)
            object.__setattr__(self, "_field_names", found)
            return found
        return self._field_names

    def check_text_fields(self, text_fields: Sequence[str], where: str = "text_fields") -> None:
        """DataError when a name of ``text_fields`` is neither ``title``, ``text`` nor a field of
        any item (it would compose empty text for every item)."""
        unknown = [f for f in text_fields if f not in ("title", "text") and f not in self.field_names]
        if unknown:
            known = ", ".join(["title", "text", *sorted(self.field_names)])
            raise DataError(f"{where}: {unknown[0]!r} is not a field of any of the catalog's "
                            f"{len(self)} items; its fields: {known}")

    # ------------------------------------------------------------------ text
    def compose(self, text_fields: Sequence[str] = DEFAULT_TEXT_FIELDS,
                rows: range | None = None) -> list[str]:
        """One text per item (of ``rows``, default all) from the named fields (``title``,
        ``text`` or any key of ``fields``)."""
        rows = range(len(self)) if rows is None else rows
        self.check_text_fields(text_fields)
        if rows.step != 1:
            return [self.compose_one(i, text_fields) for i in rows]
        start, stop = rows.start, max(rows.stop, rows.start)
        needs_fields = any(f not in ("title", "text") for f in text_fields)
        columns = {"title": self.titles, "text": self.texts}
        parts = []
        field_rows: list[dict[str, Any]] = list(self.fields.slice_values(start, stop)) if needs_fields else []
        for name in text_fields:
            if name in columns:
                parts.append(list(columns[name].slice_values(start, stop)))
            else:
                parts.append([_as_text(f.get(name)) for f in field_rows])
        return [" ".join(p for p in row if p) for row in zip(*parts, strict=True)]

    def compose_chunks(self, text_fields: Sequence[str] = DEFAULT_TEXT_FIELDS,
                       chunk: int = 8192) -> Iterator[list[str]]:
        """:meth:`compose` a chunk of rows at a time (bounded memory over a large catalog)."""
        for start in range(0, len(self), chunk):
            yield self.compose(text_fields, range(start, min(start + chunk, len(self))))

    def compose_one(self, i: int, text_fields: Sequence[str] = DEFAULT_TEXT_FIELDS) -> str:
        return self.compose(text_fields, range(i, i + 1))[0]

    def extend(self, other: Catalog) -> Catalog:
        """A new catalog with ``other``'s items appended (ids must not repeat)."""
        rows = self.rows_of(other.ids)
        dup = [other.ids[i] for i in np.flatnonzero(rows >= 0)]
        if dup:
            raise DataError(f"Items already in the catalog: {dup[:5]} ({len(dup)} in all)")
        return Catalog(
            self.ids.concat(other.ids),
            self.titles.concat(other.titles),
            self.texts.concat(other.texts),
            self.fields.concat(other.fields),
            np.concatenate([self.popularity, other.popularity]),
            field_names=self.field_names | other.field_names,
        )

    # ------------------------------------------------------------------ reading
    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> Catalog:
        """A catalog from ``{"id", "title"?, "text"?, "fields"?, "popularity"?}`` mappings; any
        other key of a record is one of its structured fields."""
        builders = {c: _ColumnBuilder() for c in _COLUMNS}
        popularity: list[float] = []
        names: set[str] = set()
        for r in records:
            fields = dict(r.get("fields") or {})
            fields.update((k, v) for k, v in r.items() if k not in RECORD_KEYS)
            builders["ids"].append(str(r["id"]))
            builders["titles"].append(str(r.get("title") or ""))
            builders["texts"].append(str(r.get("text") or ""))
            builders["fields"].append(_dump_fields(fields))
            popularity.append(float(r.get("popularity") or 0.0))
            names.update(fields)
        return cls(builders["ids"].finish(), builders["titles"].finish(), builders["texts"].finish(),
                   builders["fields"].finish(JsonColumn), np.array(popularity, dtype=np.float64),
                   field_names=names)

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike, limit: int | None = None) -> Catalog:
        """Read a catalog JSONL file, validating each line (errors name file, line and field)."""
        seen: dict[str, int] = {}

        def records() -> Iterator[dict[str, Any]]:
            for lineno, obj in read_jsonl(path, "catalog file"):
                where = f"{path}:{lineno}"
                item_id = str(get_field(obj, "id", (str, int), where))
                if item_id in seen:
                    raise DataError(f"{where}: duplicate id {item_id!r} (first on line {seen[item_id]})")
                seen[item_id] = lineno
                fields = get_field(obj, "fields", dict, where, required=False, default={})
                for key, value in obj.items():  # fields at the top level
                    if key in RECORD_KEYS:
                        continue
                    if key in fields and fields[key] != value:
                        raise DataError(f"{where}: field {key!r} is both at the top level ({value!r:.40}) "
                                        f"and under 'fields' ({fields[key]!r:.40}) with different values")
                    fields[key] = value
                yield {
                    "id": item_id,
                    "title": get_field(obj, "title", str, where, required=False, default=""),
                    "text": get_field(obj, "text", str, where, required=False, default=""),
                    "fields": fields,
                    "popularity": get_field(obj, "popularity", float, where, required=False, default=0.0),
                }
                if limit is not None and len(seen) >= limit:
                    return

        return cls.from_records(records())

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike) -> None:
        """Write the columns as ``.npy`` files plus ``manifest.json`` (atomic).

        The manifest records each file's size, SHA-256 and a quick fingerprint (SHA-256 of the
        size and 16 evenly spaced 4 KiB samples): :meth:`load` checks sizes and fingerprints,
        :meth:`verify` the full digests.
        """
        with atomic_directory(directory) as tmp:
            arrays = {"popularity": self.popularity, "id_hashes": self.index.hashes,
                      "id_rows": self.index.rows}
            for name in _COLUMNS:
                col = getattr(self, name)
                arrays[f"{name}.offsets"] = col.offsets
                arrays[f"{name}.utf8"] = col.data
            files = {}
            for name, arr in arrays.items():
                path = tmp / f"{name}.npy"
                np.save(path, np.ascontiguousarray(arr), allow_pickle=False)
                files[path.name] = file_record(path)
            write_manifest(tmp, "catalog", CATALOG_FORMAT_VERSION, {}, n_items=len(self), files=files,
                           field_names=sorted(self.field_names))

    @classmethod
    def load(cls, directory: str | os.PathLike, *,
             verify: Literal["quick", "full", "none"] = "quick") -> Catalog:
        """Memory-map a catalog written by :meth:`save`.

        ``verify="quick"`` (default) checks every file's size and sampled fingerprint and the
        structure of the columns (offsets start at 0, never decrease and end at the buffer's
        size; id hashes sorted; rows a permutation range): it reads kilobytes, not the data.
        ``"full"`` also recomputes every file's SHA-256 (:meth:`verify`).
        """
        directory = Path(directory)
        manifest = read_manifest(directory, "catalog", (CATALOG_FORMAT_VERSION,))
        files = manifest.get("files", {})
        if verify != "none":
            check_files(directory, files, verify)
        n = int(manifest.get("n_items", -1))

        def arr(name: str) -> np.ndarray:
            path = directory / f"{name}.npy"
            if not path.exists():
                raise PersistenceError(f"{directory}: missing file {path.name}")
            try:
                return np.load(path, mmap_mode="r", allow_pickle=False)
            except ValueError as exc:
                raise PersistenceError(f"{path}: not a readable .npy array ({exc})") from None

        columns: dict[str, StringColumn[Any]] = {}
        for name in _COLUMNS:
            offsets, data = arr(f"{name}.offsets"), arr(f"{name}.utf8")
            if verify != "none":
                _check_offsets(directory, name, offsets, data, n)
            columns[name] = (JsonColumn if name == "fields" else StringColumn)(offsets, data)
        popularity, hashes, rows = arr("popularity"), arr("id_hashes"), arr("id_rows")
        if popularity.shape != (n,) or hashes.shape != (n,) or rows.shape != (n,):
            raise PersistenceError(
                f"{directory}: inconsistent files (manifest n_items {n}, popularity.npy "
                f"{popularity.shape}, id_hashes.npy {hashes.shape}, id_rows.npy {rows.shape})")
        if verify != "none" and n > 1 and (np.any(hashes[1:] < hashes[:-1])
                                           or rows.min() < 0 or rows.max() >= n):
            raise PersistenceError(f"{directory}: id_hashes.npy / id_rows.npy are corrupt "
                                   "(hashes not sorted or rows out of range)")
        index = IdIndex(columns["ids"], hashes, rows)
        # the loop above built "fields" as a JsonColumn
        return cls(columns["ids"], columns["titles"], columns["texts"], cast(JsonColumn, columns["fields"]),
                   popularity, index=index, field_names=manifest.get("field_names"))

    @staticmethod
    def verify(directory: str | os.PathLike) -> None:
        """Recompute the SHA-256 of every file of a saved catalog; a mismatch raises
        :class:`PersistenceError` naming the file."""
        directory = Path(directory)
        manifest = read_manifest(directory, "catalog", (CATALOG_FORMAT_VERSION,))
        check_files(directory, manifest.get("files", {}), "full")


def _check_offsets(directory: Path, name: str, offsets: np.ndarray, data: np.ndarray, n: int) -> None:
    if offsets.shape != (n + 1,) or data.ndim != 1:
        raise PersistenceError(f"{directory}: {name}.offsets.npy has shape {offsets.shape}, "
                               f"expected ({n + 1},) for the manifest's {n} items")
    if offsets[0] != 0 or offsets[-1] != data.size or np.any(offsets[1:] < offsets[:-1]):
        raise PersistenceError(f"{directory}: {name}.offsets.npy is corrupt (offsets must start at "
                               f"0, never decrease and end at {name}.utf8.npy's {data.size} bytes)")


def _as_text(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(_as_text(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
