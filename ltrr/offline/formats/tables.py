"""Reading CSV, JSONL and Parquet tables with pyarrow, turning its failures into one clear
:class:`~ltrr.errors.DataError` that names the file (and the row when pyarrow knows it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ltrr.errors import DataError

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

PARQUET_MAGIC = b"PAR1"


def table_kind(path: str | os.PathLike) -> str:
    """``"parquet"``, ``"csv"`` or ``"jsonl"`` from the suffix (anything else is JSON lines)."""
    suffix = Path(path).suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".tsv"):
        return "csv"
    return "jsonl"


def check_file(path: str | os.PathLike) -> Path:
    """The path, after checking it exists, is a file and is not empty."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such log file")
    if p.is_dir():
        raise DataError(f"{p}: is a directory, not a log file")
    if p.stat().st_size == 0:
        raise DataError(f"{p}: the file is empty (0 bytes); nothing to read")
    return p


def check_parquet(path: str | os.PathLike) -> Path:
    """Raise a clear error unless ``path`` starts and ends with Parquet's magic bytes."""
    p = check_file(path)
    size = p.stat().st_size
    with p.open("rb") as fh:
        head = fh.read(4)
        fh.seek(max(size - 4, 0))
        tail = fh.read(4)
    if head != PARQUET_MAGIC:
        raise DataError(f"{p}: not a Parquet file (it does not start with the Parquet magic bytes "
                        f"'PAR1'; got {head!r})")
    if tail != PARQUET_MAGIC or size < 12:
        raise DataError(f"{p}: truncated Parquet file (no footer: it does not end with 'PAR1'; "
                        "the write was probably interrupted)")
    return p


def read_table(path: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
    """A whole table (pyarrow) from CSV, JSON lines or Parquet, by suffix."""
    import pyarrow as pa

    kind = table_kind(path)
    p = check_parquet(path) if kind == "parquet" else check_file(path)
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            return pq.read_table(p, columns=columns)
        if kind == "csv":
            import pyarrow.csv as pcsv

            opts = pcsv.ParseOptions(delimiter="\t") if p.suffix.lower() == ".tsv" else None
            return pcsv.read_csv(p, parse_options=opts)
        import pyarrow.json as pjson

        return pjson.read_json(p)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OSError) as exc:
        where = _csv_bad_line(p) if kind == "csv" else None
        raise DataError(f"{p}{where or ''}: cannot read it as {kind.upper()} ({_arrow_message(exc)})") from None


def _csv_bad_line(path: Path) -> str | None:
    """``:line N`` of the first CSV row whose field count differs from the header's (a truncated
    or damaged row), found by rereading the file with the csv module."""
    import csv

    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        rows = csv.reader(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        header = next(rows, None)
        if header is None:
            return None
        for lineno, row in enumerate(rows, 2):
            if len(row) != len(header):
                return f":line {lineno} (has {len(row)} fields, the header {len(header)})"
    return None


def _arrow_message(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


def require_columns(table: pa.Table, path: str | os.PathLike, needed: list[str], what: str) -> None:
    missing = [c for c in needed if c not in table.column_names]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing} needed by {what}; the file has "
                        f"{table.column_names[:12]}{' ...' if len(table.column_names) > 12 else ''}")


def numeric_column(table: pa.Table, name: str, path: str | os.PathLike, *, integer: bool = False,
                   line0: int = 2) -> np.ndarray:
    """A column as float64 (or int64) numpy, with the first null or non-number named by line."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    col = table.column(name)
    nulls = col.is_null().to_numpy(zero_copy_only=False) if col.null_count else None
    if nulls is not None and nulls.any():
        i = int(np.flatnonzero(nulls)[0])
        raise DataError(f"{path}:{_place(i, line0)}: column {name!r} is empty")
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type)):
        try:
            col = pc.cast(col, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            vals = col.to_pylist()
            for i, v in enumerate(vals):
                try:
                    float(v)
                except (TypeError, ValueError):
                    raise DataError(f"{path}:{_place(i, line0)}: column {name!r} must be a number, "
                                    f"got {str(v)[:40]!r}") from None
            raise
    arr = col.to_numpy(zero_copy_only=False).astype(np.float64)
    if integer:
        frac = arr != np.round(arr)
        if frac.any():
            i = int(np.flatnonzero(frac)[0])
            raise DataError(f"{path}:{_place(i, line0)}: column {name!r} must be an integer, got {arr[i]!r}")
        return arr.astype(np.int64)
    return arr


def _place(i: int, line0: int) -> str:
    """``line N`` for text files (``line0`` = line of the first data row), ``row N`` (0-based) else."""
    return f"line {i + line0}" if line0 else f"row {i}"
