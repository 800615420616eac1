"""Readers and writers for the data formats of the design: JSONL records, TREC qrels and runs.

Every reader validates as it goes and reports a bad line as ``file:line: what is wrong``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ltrr.errors import DataError


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; a bad line raises DataError."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def field(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str, *,
          required: bool = True, default: Any = None) -> Any:
    """Fetch ``obj[key]`` checking its type; ``where`` is ``file:line`` for the message."""
    if key not in obj or obj[key] is None:
        if required:
            raise DataError(f"{where}: missing required field '{key}'")
        return default
    value = obj[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise DataError(
            f"{where}: field '{key}' must be {names}, got {type(value).__name__} ({value!r:.60})"
        )
    return value


def read_queries(path: str | os.PathLike) -> list[tuple[str, str]]:
    """Read ``{"qid", "query"}`` JSONL into ``[(qid, query)]``."""
    out = []
    for lineno, obj in read_jsonl(path):
        where = f"{path}:{lineno}"
        qid = field(obj, "qid", (str, int), where)
        out.append((str(qid), field(obj, "query", str, where)))
    return out


def read_qrels(path: str | os.PathLike) -> dict[str, dict[str, int]]:
    """Read TREC qrels ``qid iter docid grade`` into ``{qid: {docid: grade}}``."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 4:
                raise DataError(f"{path}:{lineno}: a qrels line needs 4 columns 'qid iter docid grade', got {len(parts)}")
            try:
                grade = int(parts[3])
            except ValueError:
                raise DataError(f"{path}:{lineno}: grade must be an integer, got {parts[3]!r}") from None
            qrels.setdefault(parts[0], {})[parts[2]] = grade
    return qrels


def read_run(path: str | os.PathLike) -> dict[str, dict[str, float]]:
    """Read a TREC run ``qid Q0 docid rank score tag`` into ``{qid: {docid: score}}``."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    run: dict[str, dict[str, float]] = {}
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 6:
                raise DataError(f"{path}:{lineno}: a run line needs 6 columns 'qid Q0 docid rank score tag', got {len(parts)}")
            try:
                score = float(parts[4])
            except ValueError:
                raise DataError(f"{path}:{lineno}: score must be a number, got {parts[4]!r}") from None
            run.setdefault(parts[0], {})[parts[2]] = score
    return run


def write_run(path: str | os.PathLike, run: Mapping[str, list[tuple[str, float]]], tag: str) -> None:
    """Write ``{qid: [(docid, score), ...best first]}`` as a TREC run file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for qid, docs in run.items():
            for rank, (docid, score) in enumerate(docs, start=1):
                fh.write(f"{qid} Q0 {docid} {rank} {score:.6f} {tag}\n")
    os.replace(tmp, path)
