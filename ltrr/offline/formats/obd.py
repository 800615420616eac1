"""Open Bandit Dataset CSVs (``item_id, position, click, propensity_score`` + context columns).

Read as Open Bandit Pipeline 0.4.1's ``OpenBanditDataset`` reads them, so estimates can be
compared number for number: rows sorted by ``timestamp`` (stable), position = dense rank - 1,
reward = ``click``, context = the ``user_feature*`` columns one-hot encoded with the first
category of each dropped (``pandas.get_dummies(drop_first=True)``; numeric ones kept as they are,
first), and when ``item_context.csv`` sits beside the log, action features = its columns label-
encoded, with ``item_feature_0`` kept numeric and placed last. The ``user-item_affinity_*``
columns are not context in OBP's default feature engineering, nor here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ltrr.errors import DataError
from ltrr.offline.formats.actionlog import ActionLog, dense_rank, label_encode, one_hot_drop_first
from ltrr.offline.formats.tables import numeric_column, read_table, require_columns

if TYPE_CHECKING:
    import pyarrow as pa

REQUIRED = ["item_id", "position", "click", "propensity_score"]


def is_obd_header(columns: list[str]) -> bool:
    """An OBD-style header: ``item_id`` and at least one more of the OBD columns (a missing one
    is then reported by name, instead of the file being taken for another format)."""
    return "item_id" in columns and sum(c in columns for c in REQUIRED) >= 2


def _is_numeric(col: pa.ChunkedArray) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type)


def read_obd(path: str | os.PathLike, item_context: str | os.PathLike | None = None) -> ActionLog:
    """An OBD-style CSV as an :class:`ActionLog` (OBP's feature engineering, see the module doc)."""
    table = read_table(path)
    require_columns(table, path, REQUIRED, "the Open Bandit Dataset format")
    n = table.num_rows
    if n == 0:
        raise DataError(f"{path}: the log has a header but no rows; nothing to evaluate")
    order = np.arange(n)
    if "timestamp" in table.column_names:
        ts = np.asarray(table.column("timestamp").cast("string").to_pylist(), dtype=object)
        order = np.argsort(ts.astype(str), kind="stable")
    lines = order + 2  # the header is line 1
    action = numeric_column(table, "item_id", path, integer=True)[order]
    position_raw = numeric_column(table, "position", path, integer=True)[order]
    reward = numeric_column(table, "click", path)[order]
    pscore = numeric_column(table, "propensity_score", path)[order]
    bad = action < 0
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}:line {lines[i]}: item_id {int(action[i])} is negative")
    user_cols = [c for c in table.column_names if "user_feature" in c]
    numeric, dummies = [], []
    for c in user_cols:
        col = table.column(c)
        if _is_numeric(col):
            numeric.append(col.to_numpy(zero_copy_only=False).astype(np.float64)[:, None])
        else:
            dummies.append(one_hot_drop_first(np.asarray(col.cast("string").to_pylist(), dtype=object)))
    parts = numeric + dummies
    context = (np.concatenate(parts, axis=1) if parts else np.zeros((n, 0)))[order]
    ic_path = Path(item_context) if item_context else Path(path).with_name("item_context.csv")
    action_context = read_item_context(ic_path) if ic_path.exists() else None
    n_actions = int(action.max()) + 1
    if action_context is not None:
        if action_context.shape[0] < n_actions:
            raise DataError(f"{ic_path}: {action_context.shape[0]} items, but the log {path} has item_id "
                            f"{n_actions - 1}")
        n_actions = action_context.shape[0]
    log = ActionLog(str(path), "obd", action, reward, pscore, dense_rank(position_raw), context,
                    n_actions, int(np.unique(position_raw).size), action_context, None, lines, "line")
    return log.validate()


def read_item_context(path: str | os.PathLike) -> np.ndarray:
    """``float64[n_items, d]``: OBP's action context (label-encoded columns, ``item_feature_0`` last)."""
    table = read_table(path)
    names = table.column_names
    if names and names[0] in ("", "Unnamed: 0"):
        names = names[1:]  # the CSV's unnamed index column (pandas index_col=0)
    if table.num_rows == 0:
        raise DataError(f"{path}: the item context has no rows")
    cols = []
    for c in names:
        if c == "item_feature_0":
            continue
        col = table.column(c)
        values = (col.to_numpy(zero_copy_only=False) if _is_numeric(col)
                  else np.asarray(col.cast("string").to_pylist(), dtype=str))
        cols.append(label_encode(values).astype(np.float64))
    if "item_feature_0" in names:
        cols.append(numeric_column(table, "item_feature_0", path))
    return np.stack(cols, axis=1)
