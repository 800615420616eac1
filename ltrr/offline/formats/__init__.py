"""Log formats off-policy evaluation reads: ltrr's own plan logs and foreign bandit logs.

``detect_format`` names the format of a file (or checks the one given with ``--format``);
``read_action_log`` reads the foreign ones (Open Bandit Dataset CSV, Vowpal Wabbit DSJSON, any
table with a column mapping) into an :class:`ActionLog`. ltrr's logs stream through
:class:`ltrr.offline.logs.LogReader`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ltrr.errors import ConfigError, DataError
from ltrr.offline.formats.actionlog import ActionLog
from ltrr.offline.formats.columns import ColumnMapping, read_columns
from ltrr.offline.formats.dsjson import looks_like_dsjson, read_dsjson
from ltrr.offline.formats.obd import is_obd_header, read_obd
from ltrr.offline.formats.tables import check_file, check_parquet, table_kind

FORMATS = ("ltrr", "obd", "dsjson", "columns")
FORMAT_HELP = ("ltrr (ltrr's JSONL/Parquet click logs with plan, propensities and x), obd (Open Bandit "
               "Dataset CSV: item_id, position, click, propensity_score, user_feature_*), dsjson (Vowpal "
               "Wabbit decision-service JSON lines), columns (any CSV/JSONL/Parquet with a column mapping)")

__all__ = ["FORMATS", "ActionLog", "ColumnMapping", "detect_format", "read_action_log"]


def _first_json(path: Path) -> object:
    with path.open("rb") as fh:
        for raw in fh:
            if raw.strip():
                try:
                    return json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    return None
    return None


def _csv_header(path: Path) -> list[str]:
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        head = fh.readline().rstrip("\r\n")
    return [c.strip().strip('"') for c in head.split("\t" if path.suffix.lower() == ".tsv" else ",")]


def detect_format(path: str | os.PathLike, fmt: str | None = None, mapping: ColumnMapping | None = None) -> str:
    """The log's format: ``fmt`` checked against the known ones, or detected from the file."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ConfigError(f"Unsupported log format {fmt!r}; supported: {FORMAT_HELP}.")
        return fmt
    p = Path(path)
    kind = table_kind(p)
    if kind == "parquet":
        import pyarrow.parquet as pq

        check_parquet(p)
        try:
            names = pq.ParquetFile(p).schema_arrow.names
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for corrupt files
            raise DataError(f"{p}: cannot read the Parquet footer ({str(exc)[:200]})") from None
        if mapping is None and "plan" in names and "propensities" in names:
            return "ltrr"
        return "columns"
    check_file(p)
    if kind == "csv":
        header = _csv_header(p)
        if mapping is None and is_obd_header(header):
            return "obd"
        return "columns"
    obj = _first_json(p)
    if not isinstance(obj, dict):
        header = _csv_header(p)
        if len(header) > 2 and is_obd_header(header):
            return "obd"
        raise DataError(f"{p}: unsupported log format: the first line is neither a JSON object nor an "
                        f"Open Bandit Dataset CSV header. Supported: {FORMAT_HELP}; name one with --format.")
    if mapping is not None:
        return "columns"
    if looks_like_dsjson(obj):
        return "dsjson"
    if "query" in obj or "plan" in obj or "shown" in obj:
        return "ltrr"
    if any(k in obj for k in ("action", "action_id")):
        return "columns"
    raise DataError(f"{p}: unsupported log format: the first record has keys {sorted(obj)[:10]}. "
                    f"Supported: {FORMAT_HELP}; name one with --format (and --map for columns).")


def read_action_log(path: str | os.PathLike, fmt: str, mapping: ColumnMapping | None = None,
                    *, hash_bits: int | None = None) -> ActionLog:
    """A foreign log (``obd``, ``dsjson`` or ``columns``) in memory."""
    if fmt == "obd":
        return read_obd(path)
    if fmt == "dsjson":
        return read_dsjson(path) if hash_bits is None else read_dsjson(path, hash_bits)
    if fmt == "columns":
        return read_columns(path, mapping)
    raise ConfigError(f"read_action_log reads obd, dsjson and columns logs, not {fmt!r}")
