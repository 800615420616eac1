"""Readers and writers for the data formats of the design: JSONL records, TREC qrels and runs.

Every reader validates as it goes and reports a bad line as ``file:line: what is wrong``.
Text files are read as UTF-8 line by line, so a byte that is not UTF-8 (a Latin-1 line in a
UTF-8 file, a UTF-16 file) is reported with its line and column; a leading byte-order mark and
Windows line ends (CRLF) are accepted. An empty file is an error that says so.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ltrr.errors import DataError

_BOM = b"\xef\xbb\xbf"


def text_lines(path: str | os.PathLike, what: str = "file") -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` of a UTF-8 text file, line ends removed; a line that is not
    UTF-8 raises DataError with its line and column. ``what`` names the file's role in errors."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such {what}")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a {what}")
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno == 1:
                if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
                    raise DataError(f"{path}:1: the file is UTF-16 (byte-order mark {raw[:2].hex(' ')}); "
                                    "save it as UTF-8")
                if raw.startswith(_BOM):
                    raw = raw[len(_BOM):]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column "
                                f"{exc.start + 1}); save the file as UTF-8") from None
            yield lineno, line.rstrip("\r\n")


def json_error(exc: json.JSONDecodeError) -> str:
    """``invalid JSON at column 12: Expecting ',' delimiter`` for one line's decode error."""
    return f"invalid JSON at column {exc.colno}: {exc.msg}"


def read_jsonl(path: str | os.PathLike, what: str = "JSONL file") -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; a bad line raises DataError, and
    so does a file without any record."""
    n = 0
    for lineno, line in text_lines(path, what):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: {json_error(exc)}") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        n += 1
        yield lineno, obj
    if n == 0:
        raise DataError(f"{path}: the {what} is empty (no JSON records)")


def field(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str, *,
          required: bool = True, default: Any = None) -> Any:
    """Fetch ``obj[key]`` checking its type; ``where`` is ``file:line`` for the message."""
    if key not in obj or obj[key] is None:
        if required:
            present = ", ".join(sorted(obj)) or "none"
            raise DataError(f"{where}: missing required field '{key}' (fields present: {present})")
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
    """Read ``{"qid", "query"}`` JSONL into ``[(qid, query)]``; a repeated qid is an error (a run
    would silently miss the judged query it hides)."""
    out = []
    first_line: dict[str, int] = {}
    for lineno, obj in read_jsonl(path, "queries file"):
        where = f"{path}:{lineno}"
        qid = str(field(obj, "qid", (str, int), where))
        text = field(obj, "query", str, where)
        if qid in first_line:
            raise DataError(f"{where}: duplicate qid {qid!r} (first on line {first_line[qid]})")
        if not qid.strip() or any(c.isspace() for c in qid):
            raise DataError(f"{where}: field 'qid' must be non-empty without spaces (TREC files split "
                            f"on whitespace), got {qid!r}")
        first_line[qid] = lineno
        out.append((qid, text))
    return out


def _columns(path: Path, what: str, header: str) -> Iterator[tuple[int, list[str]]]:
    """Whitespace-separated rows of a TREC file with as many columns as ``header`` names."""
    n_cols = len(header.split())
    n = 0
    for lineno, line in text_lines(path, what):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != n_cols:
            raise DataError(f"{path}:{lineno}: a {what} line needs {n_cols} columns '{header}', "
                            f"got {len(parts)}: {line.strip()!r:.80}")
        n += 1
        yield lineno, parts
    if n == 0:
        raise DataError(f"{path}: the {what} is empty")


def read_qrels(path: str | os.PathLike) -> dict[str, dict[str, int]]:
    """Read TREC qrels ``qid iter docid grade`` into ``{qid: {docid: grade}}``."""
    path = Path(path)
    qrels: dict[str, dict[str, int]] = {}
    for lineno, parts in _columns(path, "qrels file", "qid iter docid grade"):
        try:
            grade = int(parts[3])
        except ValueError:
            raise DataError(f"{path}:{lineno}: grade must be an integer, got {parts[3]!r}") from None
        qrels.setdefault(parts[0], {})[parts[2]] = grade
    return qrels


def read_run(path: str | os.PathLike) -> dict[str, dict[str, float]]:
    """Read a TREC run ``qid Q0 docid rank score tag`` into ``{qid: {docid: score}}``; a document
    listed twice for a query is an error."""
    path = Path(path)
    run: dict[str, dict[str, float]] = {}
    for lineno, parts in _columns(path, "run file", "qid Q0 docid rank score tag"):
        try:
            score = float(parts[4])
        except ValueError:
            raise DataError(f"{path}:{lineno}: score must be a number, got {parts[4]!r}") from None
        if not math.isfinite(score):
            raise DataError(f"{path}:{lineno}: score must be finite, got {parts[4]!r}")
        docs = run.setdefault(parts[0], {})
        if parts[2] in docs:
            raise DataError(f"{path}:{lineno}: document {parts[2]!r} is listed twice for query {parts[0]!r}")
        docs[parts[2]] = score
    return run


def run_scores(scores: Sequence[float]) -> list[str]:
    """Scores of one query's ranking (best first) as text that sorts back into the same order.

    Evaluators sort a run by score and break ties their own way (trec_eval by docid descending,
    others by docid ascending or by position), and some read scores as 32-bit floats. So a
    query's scores are written as they are (6 decimals, or 9 significant digits when 6 decimals
    would tie them) only when they strictly decrease even as 32-bit floats; otherwise (ties, or
    scores that increase somewhere, as on an interleaved page) the query gets rank-derived
    scores ``n - rank + 1``, which every evaluator orders as written.
    """
    vals = np.asarray([float(s) for s in scores], dtype=np.float64)
    if vals.size and np.isfinite(vals).all():
        for fmt in ("{:.6f}", "{:.9g}"):
            text = [fmt.format(v) for v in vals.tolist()]
            parsed = np.asarray(text, dtype=np.float64).astype(np.float32)
            if np.all(np.diff(parsed) < 0):
                return text
    n = vals.size
    return [str(n - i) for i in range(n)]


def write_run(path: str | os.PathLike, run: Mapping[str, Sequence[tuple[str, float]]], tag: str) -> None:
    """Write ``{qid: [(docid, score), ...best first]}`` as a TREC run file (atomic), with scores
    that reproduce the given order in any evaluator (:func:`run_scores`)."""
    if not tag or any(c.isspace() for c in tag):
        raise DataError(f"The run tag must be non-empty without spaces. Got {tag!r} instead.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            for qid, docs in run.items():
                texts = run_scores([s for _, s in docs])
                for rank, ((docid, _), score) in enumerate(zip(docs, texts, strict=True), start=1):
                    fh.write(f"{qid} Q0 {docid} {rank} {score} {tag}\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
