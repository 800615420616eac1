"""The item catalog: ids, titles, free text, structured fields and popularity.

Items are addressed inside ltrr by their row index (``int64``); external string ids are mapped
at the edges. Text to index is composed from the fields named in config (``text_fields``):
string values as they are, lists joined with spaces, numbers as decimal text.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ltrr.errors import DataError
from ltrr.io import field as get_field
from ltrr.io import read_jsonl

DEFAULT_TEXT_FIELDS = ("title", "text")


@dataclass(frozen=True)
class Catalog:
    """An immutable catalog. ``index`` maps an external id to its row."""

    ids: tuple[str, ...]
    titles: tuple[str, ...]
    texts: tuple[str, ...]
    fields: tuple[Mapping[str, Any], ...]
    popularity: np.ndarray
    index: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.ids)
        if not (len(self.titles) == len(self.texts) == len(self.fields) == self.popularity.size == n):
            raise ValueError("Catalog columns must have one entry per item.")
        if not self.index:
            object.__setattr__(self, "index", {item_id: i for i, item_id in enumerate(self.ids)})
        if len(self.index) != n:
            raise DataError("Catalog ids must be unique.")

    def __len__(self) -> int:
        return len(self.ids)

    def rows_of(self, item_ids: Sequence[str]) -> np.ndarray:
        """Row indices of external ids; unknown ids map to -1."""
        return np.array([self.index.get(i, -1) for i in item_ids], dtype=np.int64)

    def compose(self, text_fields: Sequence[str] = DEFAULT_TEXT_FIELDS) -> list[str]:
        """One text per item from the named fields (``title``, ``text`` or any key of ``fields``)."""
        return [self.compose_one(i, text_fields) for i in range(len(self))]

    def compose_one(self, i: int, text_fields: Sequence[str] = DEFAULT_TEXT_FIELDS) -> str:
        parts: list[str] = []
        for name in text_fields:
            if name == "title":
                value: Any = self.titles[i]
            elif name == "text":
                value = self.texts[i]
            else:
                value = self.fields[i].get(name)
            parts.append(_as_text(value))
        return " ".join(p for p in parts if p)

    def extend(self, other: Catalog) -> Catalog:
        """A new catalog with ``other``'s items appended (ids must not repeat)."""
        dup = [i for i in other.ids if i in self.index]
        if dup:
            raise DataError(f"Items already in the catalog: {dup[:5]} ({len(dup)} in all)")
        return Catalog(
            self.ids + other.ids,
            self.titles + other.titles,
            self.texts + other.texts,
            self.fields + other.fields,
            np.concatenate([self.popularity, other.popularity]),
        )

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]]) -> Catalog:
        return cls(
            tuple(str(r["id"]) for r in records),
            tuple(str(r.get("title") or "") for r in records),
            tuple(str(r.get("text") or "") for r in records),
            tuple(dict(r.get("fields") or {}) for r in records),
            np.array([float(r.get("popularity") or 0.0) for r in records], dtype=np.float64),
        )

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike, limit: int | None = None) -> Catalog:
        """Read a catalog JSONL file, validating each line (errors name file, line and field)."""
        records: list[dict[str, Any]] = []
        seen: dict[str, int] = {}
        for lineno, obj in read_jsonl(path):
            where = f"{path}:{lineno}"
            item_id = str(get_field(obj, "id", (str, int), where))
            if item_id in seen:
                raise DataError(f"{where}: duplicate id {item_id!r} (first on line {seen[item_id]})")
            seen[item_id] = lineno
            records.append({
                "id": item_id,
                "title": get_field(obj, "title", str, where, required=False, default=""),
                "text": get_field(obj, "text", str, where, required=False, default=""),
                "fields": get_field(obj, "fields", dict, where, required=False, default={}),
                "popularity": get_field(obj, "popularity", float, where, required=False, default=0.0),
            })
            if limit is not None and len(records) >= limit:
                break
        if not records:
            raise DataError(f"{path}: the catalog is empty")
        return cls.from_records(records)


def _as_text(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(_as_text(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
