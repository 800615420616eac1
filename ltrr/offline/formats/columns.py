"""Generic bandit logs: any CSV, JSON-lines or Parquet table with a column mapping.

The mapping names the columns holding the logged action, the reward (or a cost, negated), the
propensity, optionally the position and the context features. Give it on the command line
(``--map action=item --map reward=click ...``) or in a small TOML file::

    action = "item"          # integer indices are used as they are; other ids are mapped to
                             # 0..K-1 in sorted order
    reward = "click"         # or: cost = "cost"  (reward = -cost)
    propensity = "p"
    position = "slot"        # optional; mapped to 0..L-1 by dense rank
    context = ["age", "f_*"] # optional; names or glob patterns; strings are one-hot encoded

Without a mapping the standard names are tried: ``action``, ``reward``/``cost``,
``propensity``/``pscore``, ``position``, and context ``x`` (a list column) or ``x_*`` columns
(what ``ltrr log convert`` writes).
"""

from __future__ import annotations

import fnmatch
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ltrr.errors import ConfigError, DataError
from ltrr.offline.formats.actionlog import ActionLog, dense_rank, one_hot_drop_first
from ltrr.offline.formats.tables import numeric_column, read_table, require_columns, table_kind

if TYPE_CHECKING:
    import pyarrow as pa

KEYS = ("action", "reward", "cost", "propensity", "position", "context")
DEFAULT_NAMES = {"action": ("action", "action_id"), "reward": ("reward",), "cost": ("cost",),
                 "propensity": ("propensity", "pscore", "propensity_score", "probability"),
                 "position": ("position", "slot")}


@dataclass(frozen=True)
class ColumnMapping:
    """Which column holds what (see the module doc)."""

    action: str | None = None
    reward: str | None = None
    cost: str | None = None
    propensity: str | None = None
    position: str | None = None
    context: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, entries: Sequence[str] = (), toml_path: str | os.PathLike | None = None) -> ColumnMapping | None:
        """From ``KEY=VALUE`` entries and/or a TOML file (entries win); None when neither is given."""
        data: dict[str, object] = {}
        if toml_path is not None:
            p = Path(toml_path)
            if not p.exists():
                raise ConfigError(f"{p}: no such column-mapping file")
            try:
                data.update(tomllib.loads(p.read_text(encoding="utf-8")))
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{p}: invalid TOML ({exc})") from None
        for e in entries:
            key, sep, value = e.partition("=")
            if not sep or not value:
                raise ConfigError(f"--map takes KEY=COLUMN; got {e!r}")
            data[key.strip()] = [v.strip() for v in value.split(",")] if key.strip() == "context" else value.strip()
        if not data:
            return None
        where = toml_path or "--map"
        unknown = sorted(set(data) - set(KEYS))
        if unknown:
            raise ConfigError(f"{where}: unknown column-mapping key {unknown[0]!r}; allowed keys: {', '.join(KEYS)}")
        names: dict[str, str] = {}
        context: tuple[str, ...] | None = None
        for k, v in data.items():
            if k == "context" and isinstance(v, list) and all(isinstance(x, str) for x in v):
                context = tuple(v)
            elif k != "context" and isinstance(v, str):
                names[k] = v
            else:
                kind = "a list of column names" if k == "context" else "a column name (string)"
                raise ConfigError(f"{where}: the mapping's {k!r} must be {kind}; got {v!r}")
        if "reward" in data and "cost" in data:
            raise ConfigError(f"{where}: give either 'reward' or 'cost' in the column mapping, not both")
        return cls(action=names.get("action"), reward=names.get("reward"), cost=names.get("cost"),
                   propensity=names.get("propensity"), position=names.get("position"), context=context)

    def resolve(self, names: Sequence[str], path: str | os.PathLike) -> ResolvedColumns:
        """Fill unset fields from the standard names; raise when a required one is missing."""
        def pick(key: str) -> str | None:
            given = getattr(self, key)
            if given is not None:
                return given
            return next((n for n in DEFAULT_NAMES.get(key, ()) if n in names), None)

        action, propensity, position = pick("action"), pick("propensity"), pick("position")
        reward = self.reward if self.reward is not None else (None if self.cost is not None else pick("reward"))
        cost = self.cost if self.cost is not None else (pick("cost") if reward is None else None)
        outcome = reward or cost
        if action is None or outcome is None or propensity is None:
            missing = [k for k, v in (("action", action), ("reward or cost", outcome),
                                      ("propensity", propensity)) if v is None]
            raise DataError(f"{path}: no column for {', '.join(missing)}; name them with --map KEY=COLUMN "
                            f"(keys: {', '.join(KEYS)}) or --mapping FILE.toml; the file has {list(names)[:12]}")
        if self.context is None:
            context = ("x",) if "x" in names else tuple(n for n in names if fnmatch.fnmatch(n, "x_*"))
        else:
            context = tuple(c for pat in self.context for c in (fnmatch.filter(names, pat) or [pat]))
        return ResolvedColumns(action, reward, cost, propensity, position, context, outcome,
                               negate=not reward)


@dataclass(frozen=True)
class ResolvedColumns:
    """A :class:`ColumnMapping` resolved against a table: the required columns are named, and
    the rewards are ``outcome``'s values (negated when ``negate``: it is the cost column)."""

    action: str
    reward: str | None
    cost: str | None
    propensity: str
    position: str | None
    context: tuple[str, ...]
    outcome: str
    negate: bool


def _line0(path: str | os.PathLike) -> int:
    kind = table_kind(path)
    return {"csv": 2, "jsonl": 1}.get(kind, 0)


def read_columns(path: str | os.PathLike, mapping: ColumnMapping | None = None) -> ActionLog:
    """A mapped table as an :class:`ActionLog`."""
    import pyarrow as pa

    table = read_table(path)
    m = (mapping or ColumnMapping()).resolve(table.column_names, path)
    needed = [c for c in (m.action, m.reward, m.cost, m.propensity, m.position) if c] + list(m.context or ())
    require_columns(table, path, needed, "the column mapping")
    n = table.num_rows
    if n == 0:
        raise DataError(f"{path}: the log has no rows; nothing to evaluate")
    line0 = _line0(path)
    where = "row" if line0 == 0 else "line"
    lines = np.arange(n) + line0
    acol = table.column(m.action)
    labels = None
    if pa.types.is_integer(acol.type):
        action = numeric_column(table, m.action, path, integer=True, line0=line0)
        if action.min() < 0:
            i = int(np.argmin(action))
            raise DataError(f"{path}:{where} {lines[i]}: action {int(action[i])} is negative")
        n_actions = int(action.max()) + 1
    else:
        raw = acol.cast("string").to_pylist()
        if None in raw:
            i = raw.index(None)
            raise DataError(f"{path}:{where} {lines[i]}: column {m.action!r} is empty")
        uniq, action = np.unique(np.asarray(raw, dtype=str), return_inverse=True)
        labels, action, n_actions = tuple(uniq.tolist()), action.ravel().astype(np.int64), len(uniq)
    outcome = numeric_column(table, m.outcome, path, line0=line0)
    reward = -outcome if m.negate else outcome
    pscore = numeric_column(table, m.propensity, path, line0=line0)
    position = (dense_rank(numeric_column(table, m.position, path, integer=True, line0=line0))
                if m.position else np.zeros(n, dtype=np.int64))
    parts = [_context_block(table, c, path, line0) for c in m.context or ()]
    context = np.concatenate(parts, axis=1) if parts else np.zeros((n, 0))
    return ActionLog(str(path), "columns", action, reward, pscore, position, context, n_actions,
                     int(position.max()) + 1, None, None, lines, where, labels).validate()


def _context_block(table: pa.Table, name: str, path: str | os.PathLike, line0: int) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    col = table.column(name)
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type) or pa.types.is_fixed_size_list(col.type):
        lens = pc.list_value_length(col).fill_null(-1).to_numpy(zero_copy_only=False)
        d = int(np.bincount(lens[lens >= 0]).argmax()) if (lens >= 0).any() else 0
        bad = lens != d
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            where = f"line {i + line0}" if line0 else f"row {i}"
            raise DataError(f"{path}:{where}: list column {name!r} has {lens[i]} values, expected {d}")
        flat = pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.float64)
        return flat.reshape(table.num_rows, d)
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type) or pa.types.is_dictionary(col.type):
        return one_hot_drop_first(np.asarray(col.cast("string").to_pylist(), dtype=object))
    return numeric_column(table, name, path, line0=line0)[:, None]


def mapping_summary(m: ColumnMapping | None) -> Mapping[str, object] | None:
    return None if m is None else {k: getattr(m, k) for k in KEYS if getattr(m, k) is not None}
