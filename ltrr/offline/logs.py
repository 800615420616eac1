"""Click logs: streaming readers (JSONL, Parquet), validation, writers and the export of the
engine's SQLite event log.

One search per record::

    {"event_id"?, "ts", "query", "context": {...}, "shown": [ids], "clicks": [ids],
     "plan"?: {strategy: depth}, "propensities"?: {"plan": p, "strategies": {strategy: p_s}},
     "x"?: [floats], "reward"?: float, "strategy_rewards"?: {strategy: r_s}}

Logs written by ltrr carry ``plan``, ``propensities`` and the context features ``x`` the policy
saw, so they support unbiased off-policy evaluation and bandit-feedback replay; foreign logs
(query, shown, clicks) support full-information replay. In Parquet, ``context`` is a JSON
string column, ``plan``/``propensities``/``strategy_rewards`` are structs and ``x`` a list of
doubles.

Readers stream in bounded memory: JSONL line by line, Parquet one record batch at a time. Bad
records are counted in a :class:`LogReport` with ``file:line`` examples (Parquet: ``file:row N``,
0-based) and skipped, or raise :class:`~ltrr.errors.DataError` at once when ``strict``.
Problems: ``malformed`` (bad JSON or a field of the wrong type), ``missing_query``,
``click_not_shown``, ``bad_propensity`` (not in (0, 1]); ``out_of_order`` (time going
backwards) is reported but the record is kept.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ltrr.errors import DataError
from ltrr.io import json_error
from ltrr.reward import RewardSpec, decision_rewards, page_weights
from ltrr.types import Decision, Plan

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

#: Parquet row-group size of the writer; also the unit of sharding and of bootstrap seeding
ROW_GROUP_ROWS = 65_536
#: at most this many examples are kept per problem kind
MAX_EXAMPLES = 5
PROBLEM_KINDS = ("malformed", "missing_query", "click_not_shown", "bad_propensity", "out_of_order")
#: problems that make a record unusable (the others are only reported)
SKIPPING = frozenset(PROBLEM_KINDS) - {"out_of_order"}
#: the Parquet columns off-policy evaluation reads (and validates)
OPE_COLUMNS = ("query", "shown", "clicks", "plan", "propensities", "x", "reward", "strategy_rewards")


def log_format(path: str | os.PathLike) -> str:
    """``"parquet"`` or ``"jsonl"`` from the file name (``.parquet``/``.pq`` vs anything else)."""
    suffix = Path(path).suffix.lower()
    return "parquet" if suffix in (".parquet", ".pq") else "jsonl"


# ----------------------------------------------------------------------------------------------
# records and validation


@dataclass(frozen=True)
class LogRecord:
    """One logged search.

    ``offset`` is the record's 0-based index in its file (blank JSONL lines excluded), used to
    resume a replay; ``where`` names it for messages. ``plan`` (depths and propensities) and
    ``x`` are present only in logs written by ltrr; ``strategy_rewards`` follows
    ``plan.strategies``.
    """

    offset: int
    where: str
    event_id: str
    ts: float
    query: str
    context: Mapping[str, Any]
    shown: tuple[str, ...]
    clicks: tuple[str, ...]
    plan: Plan | None = None
    x: np.ndarray | None = None
    reward: float | None = None
    strategy_rewards: np.ndarray | None = None

    @property
    def has_plan(self) -> bool:
        return self.plan is not None

    def ope_inputs(self) -> tuple[Plan, np.ndarray]:
        """The plan and context features ``x`` off-policy evaluation needs; DataError naming the
        record when it lacks either (a foreign record)."""
        if self.plan is None or self.x is None:
            raise DataError(f"{self.where}: no plan/propensities/x: a foreign record cannot be "
                            "evaluated off-policy")
        return self.plan, self.x

    def to_json(self) -> dict[str, Any]:
        """The record as one JSON object of the log format."""
        out: dict[str, Any] = {"event_id": self.event_id, "ts": self.ts, "query": self.query,
                               "context": dict(self.context), "shown": list(self.shown),
                               "clicks": list(self.clicks)}
        if self.plan is not None:
            p = self.plan
            out["plan"] = dict(zip(p.strategies, p.depths, strict=True))
            out["propensities"] = {"plan": p.propensity,
                                   "strategies": dict(zip(p.strategies, p.strategy_propensities,
                                                          strict=True))}
        if self.x is not None:
            out["x"] = [float(v) for v in self.x]
        if self.reward is not None:
            out["reward"] = float(self.reward)
        if self.strategy_rewards is not None and self.plan is not None:
            out["strategy_rewards"] = {s: float(r) for s, r in
                                       zip(self.plan.strategies, self.strategy_rewards, strict=True)}
        return out


@dataclass
class LogReport:
    """Counts and ``file:line`` examples of the problems found while reading a log."""

    path: str
    records: int = 0
    valid: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PROBLEM_KINDS, 0))
    examples: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in PROBLEM_KINDS})

    def add(self, kind: str, where: str, message: str, strict: bool) -> None:
        """Count one problem; raise at once when ``strict`` and the problem skips the record."""
        text = f"{where}: {message}"
        if strict and kind in SKIPPING:
            raise DataError(f"{text} (strict mode: stopping at the first bad record)")
        self.counts[kind] += 1
        if len(self.examples[kind]) < MAX_EXAMPLES:
            self.examples[kind].append(text)

    @property
    def skipped(self) -> int:
        return self.records - self.valid

    def merge(self, other: LogReport) -> LogReport:
        """A report covering both (examples kept in order, at most ``MAX_EXAMPLES`` each)."""
        out = LogReport(self.path, self.records + other.records, self.valid + other.valid)
        for k in PROBLEM_KINDS:
            out.counts[k] = self.counts[k] + other.counts[k]
            out.examples[k] = (self.examples[k] + other.examples[k])[:MAX_EXAMPLES]
        return out

    def check_nonempty(self) -> None:
        """Raise DataError when the log had no record, or no usable one."""
        if self.records == 0:
            raise DataError(f"{self.path}: the log is empty (no records); nothing to replay or evaluate")
        if self.valid == 0:
            raise DataError(f"{self.path}: none of the {self.records} records is usable; "
                            f"{self.summary()}")

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "records": self.records, "valid": self.valid,
                "skipped": self.skipped, "problems": {k: v for k, v in self.counts.items() if v},
                "examples": {k: v for k, v in self.examples.items() if v}}

    def summary(self) -> str:
        """One line per problem kind with its first example."""
        parts = [f"{self.records} records, {self.valid} usable"]
        for k in PROBLEM_KINDS:
            if self.counts[k]:
                action = "kept" if k not in SKIPPING else "skipped"
                parts.append(f"{k}: {self.counts[k]} ({action}; e.g. {self.examples[k][0]})")
        return "; ".join(parts)


def _str_list(value: Any, key: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise DataError(f"{where}: field '{key}' must be a list of item ids, got {type(value).__name__}")
    return tuple(str(v) for v in value)


def _number(value: Any, key: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f"{where}: field '{key}' must be a number, got {type(value).__name__} ({value!r:.40})")
    return float(value)


def _parse(obj: Mapping[str, Any], offset: int, where: str, report: LogReport, strict: bool,
           last_ts: float) -> LogRecord | None:
    """Validate one decoded object into a record, or count its problem and return None."""
    try:
        query = obj.get("query")
        if query is None:
            report.add("missing_query", where, "missing required field 'query'", strict)
            return None
        if not isinstance(query, str):
            raise DataError(f"{where}: field 'query' must be a string, got {type(query).__name__}")
        if "ts" not in obj or obj["ts"] is None:
            raise DataError(f"{where}: missing required field 'ts'")
        ts = _number(obj["ts"], "ts", where)
        context = obj.get("context") or {}
        if isinstance(context, str):
            context = json.loads(context) if context else {}
        if not isinstance(context, Mapping):
            raise DataError(f"{where}: field 'context' must be an object, got {type(context).__name__}")
        shown = _str_list(obj.get("shown"), "shown", where)
        clicks = _str_list(obj.get("clicks"), "clicks", where)
        event_id = obj.get("event_id")
        event_id = str(event_id) if event_id is not None else f"line-{offset}"
        plan = x = reward = strategy_rewards = None
        plan_d = obj.get("plan")
        if plan_d is not None:
            if not isinstance(plan_d, Mapping) or not plan_d:
                raise DataError(f"{where}: field 'plan' must map strategy names to depths")
            names = tuple(str(k) for k in plan_d)
            depths = tuple(int(_number(plan_d[k], f"plan.{k}", where)) for k in plan_d)
            props = obj.get("propensities")
            if not isinstance(props, Mapping) or props.get("plan") is None:
                raise DataError(f"{where}: a record with a 'plan' needs 'propensities' with a 'plan' probability")
            p = _number(props["plan"], "propensities.plan", where)
            sp_d = props.get("strategies") or {}
            sp = tuple(_number(sp_d.get(s, 1.0), f"propensities.strategies.{s}", where) for s in names)
            bad = [(k, v) for k, v in (("plan", p), *zip(names, sp, strict=True))
                   if not (0.0 < v <= 1.0) or math.isnan(v)]
            if bad:
                k, v = bad[0]
                report.add("bad_propensity", where, f"propensity of {k!r} is {v}; it must be in (0, 1]", strict)
                return None
            plan = Plan(names, depths, p, sp, policy=str(obj.get("policy", "")))
            sr = obj.get("strategy_rewards")
            if sr is not None:
                strategy_rewards = np.array([_number(sr.get(s, 0.0), f"strategy_rewards.{s}", where)
                                             for s in names])
        if obj.get("x") is not None:
            x = np.asarray(obj["x"], dtype=np.float64)
            if x.ndim != 1:
                raise DataError(f"{where}: field 'x' must be a flat list of numbers")
        if obj.get("reward") is not None:
            reward = _number(obj["reward"], "reward", where)
    except DataError as exc:
        report.add("malformed", where, str(exc).split(": ", 1)[-1], strict)
        return None
    except (TypeError, ValueError, json.JSONDecodeError) as exc:
        report.add("malformed", where, f"malformed record ({exc})", strict)
        return None
    if clicks:
        shown_set = set(shown)
        unshown = [c for c in clicks if c not in shown_set]
        if unshown:
            report.add("click_not_shown", where,
                       f"clicked item {unshown[0]!r} was not shown ({len(unshown)} of {len(clicks)} clicks)",
                       strict)
            return None
    if ts < last_ts:
        report.add("out_of_order", where, f"ts {ts} is earlier than the previous record's {last_ts}", strict)
    return LogRecord(offset, where, event_id, ts, query, context, shown, clicks, plan, x, reward,
                     strategy_rewards)


# ----------------------------------------------------------------------------------------------
# readers


@dataclass(frozen=True)
class Position:
    """Where a reader stands: records consumed, and for JSONL the byte offset after them."""

    records: int = 0
    byte: int = 0


class LogReader:
    """Streams the records of one JSONL or Parquet click log, validating each.

    Iterate for :class:`LogRecord` objects (replay); :meth:`batches` gives columnar
    :class:`BanditBatch` chunks (off-policy evaluation). ``report`` accumulates problems.
    """

    def __init__(self, path: str | os.PathLike, *, strict: bool = False,
                 batch_rows: int = ROW_GROUP_ROWS):
        self.path = Path(path)
        if not self.path.exists():
            raise DataError(f"{self.path}: no such click log")
        self.format = log_format(self.path)
        if self.format == "parquet":
            from ltrr.offline.formats.tables import check_parquet

            check_parquet(self.path)  # empty, truncated or not Parquet: one clear error
        self.strict = strict
        self.batch_rows = int(batch_rows)
        self.report = LogReport(str(self.path))
        self.position = Position()

    # -------------------------------------------------------------- records
    def records(self, start: Position | None = None,
                row_groups: Sequence[int] | None = None) -> Iterator[LogRecord]:
        """Valid records in file order from ``start``; ``self.position`` follows each one.
        ``row_groups`` restricts a Parquet read to those row groups (a shard)."""
        start = start or Position()
        if self.format == "jsonl":
            if row_groups is not None:
                raise DataError(f"{self.path}: sharded reads need a Parquet log; convert the JSONL log first")
            yield from self._jsonl_records(start)
        else:
            yield from self._parquet_records(start, row_groups)

    def __iter__(self) -> Iterator[LogRecord]:
        return self.records()

    def _jsonl_records(self, start: Position) -> Iterator[LogRecord]:
        last_ts = -math.inf
        offset, pos = start.records, start.byte
        lineno = _count_lines(self.path, start.byte) if start.byte else 0
        with self.path.open("rb") as fh:
            fh.seek(start.byte)
            for raw in fh:
                lineno += 1
                pos += len(raw)
                if not raw.strip():
                    self.position = Position(offset, pos)
                    continue
                where = f"{self.path}:{lineno}"
                self.report.records += 1
                try:
                    obj = json.loads(raw)
                except json.JSONDecodeError as exc:
                    self.report.add("malformed", where, json_error(exc), self.strict)
                    obj = None
                except UnicodeDecodeError as exc:
                    self.report.add("malformed", where, f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column "
                                    f"{exc.start + 1}); save the file as UTF-8", self.strict)
                    obj = None
                if obj is not None and not isinstance(obj, dict):
                    self.report.add("malformed", where, f"expected a JSON object, got {type(obj).__name__}",
                                    self.strict)
                    obj = None
                rec = _parse(obj, offset, where, self.report, self.strict, last_ts) if obj is not None else None
                offset += 1
                self.position = Position(offset, pos)
                if rec is not None:
                    self.report.valid += 1
                    last_ts = max(last_ts, rec.ts)
                    yield rec

    def _parquet_batches(self, start_row: int = 0, row_groups: Sequence[int] | None = None,
                         columns: Sequence[str] | None = None
                         ) -> Iterator[tuple[int, tuple[int, int], pa.RecordBatch]]:
        """Yield ``(first_row, chunk_key, pyarrow.RecordBatch)`` from ``start_row`` (only
        ``columns`` that exist in the file, when given)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(self.path)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{self.path}: not a readable Parquet file ({str(exc)[:200]})") from None
        if columns is not None:
            have = set(pf.schema_arrow.names)
            columns = [c for c in columns if c in have]
        md = pf.metadata
        first = 0
        groups = range(md.num_row_groups) if row_groups is None else row_groups
        starts = np.concatenate([[0], np.cumsum([md.row_group(g).num_rows for g in range(md.num_row_groups)])])
        for g in groups:
            first = int(starts[g])
            n = md.row_group(g).num_rows
            if first + n <= start_row:
                continue
            row = first
            try:
                group = list(pf.iter_batches(batch_size=self.batch_rows, row_groups=[g], columns=columns))
            except (pa.ArrowException, OSError) as exc:
                raise DataError(f"{self.path}:row {first}: row group {g} cannot be read (corrupt or "
                                f"truncated Parquet: {str(exc)[:200]})") from None
            for j, batch in enumerate(group):
                if row + batch.num_rows <= start_row:
                    row += batch.num_rows
                    continue
                if row < start_row:
                    batch = batch.slice(start_row - row)
                    row = start_row
                yield row, (g, j), batch
                row += batch.num_rows

    def _parquet_records(self, start: Position, row_groups: Sequence[int] | None = None) -> Iterator[LogRecord]:
        last_ts = -math.inf
        for row0, _key, batch in self._parquet_batches(start.records, row_groups):
            cols = {name: batch.column(i).to_pylist() for i, name in enumerate(batch.schema.names)}
            n = batch.num_rows
            for i in range(n):
                offset = row0 + i
                where = f"{self.path}:row {offset}"
                obj = {k: v[i] for k, v in cols.items()}
                for k in ("plan", "strategy_rewards"):
                    if isinstance(obj.get(k), dict):
                        obj[k] = {s: v for s, v in obj[k].items() if v is not None} or None
                self.report.records += 1
                rec = _parse(obj, offset, where, self.report, self.strict, last_ts)
                self.position = Position(offset + 1, 0)
                if rec is not None:
                    self.report.valid += 1
                    last_ts = max(last_ts, rec.ts)
                    yield rec

    # -------------------------------------------------------------- columnar
    def batches(self, row_groups: Sequence[int] | None = None) -> Iterator[BanditBatch]:
        """Columnar chunks of the records that carry a plan (off-policy evaluation).

        Records without a plan are counted as ``malformed`` here ("no plan/propensities"): a
        foreign log cannot be evaluated off-policy. ``row_groups`` restricts a Parquet read to
        those row groups (a shard).
        """
        if self.format == "parquet":
            for row0, key, batch in self._parquet_batches(0, row_groups, OPE_COLUMNS):
                out = _columnar_parquet(batch, row0, key, self)
                if out is not None:
                    yield out
            return
        if row_groups is not None:
            raise DataError(f"{self.path}: sharded reads need a Parquet log; convert the JSONL log first")
        buf: list[LogRecord] = []
        chunk = 0
        for rec in self._records_for_ope():
            buf.append(rec)
            if len(buf) == self.batch_rows:
                yield BanditBatch.from_records(buf, (chunk, 0))
                buf, chunk = [], chunk + 1
        if buf:
            yield BanditBatch.from_records(buf, (chunk, 0))

    def _records_for_ope(self) -> Iterator[LogRecord]:
        for rec in self.records():
            if rec.plan is None or rec.x is None:
                self.report.valid -= 1
                self.report.add("malformed", rec.where,
                                "no plan/propensities/x: a foreign record cannot be evaluated off-policy",
                                self.strict)
                continue
            yield rec

    def n_row_groups(self) -> int:
        import pyarrow.parquet as pq

        if self.format != "parquet":
            raise DataError(f"{self.path}: row groups exist only in Parquet logs; sharded reads need a Parquet log (convert the JSONL log first)")
        return pq.ParquetFile(self.path).metadata.num_row_groups


def _count_lines(path: Path, upto: int) -> int:
    with path.open("rb") as fh:
        return fh.read(upto).count(b"\n")


# ----------------------------------------------------------------------------------------------
# columnar batches


@dataclass(frozen=True)
class BanditBatch:
    """Columnar view of logged rounds that carry a plan: what off-policy evaluation needs.

    ``key`` identifies the chunk in its file (Parquet: row group, batch), so per-chunk random
    draws (the bootstrap) are the same whichever worker reads it.
    """

    key: tuple[int, int]
    strategies: tuple[str, ...]
    depths: np.ndarray  # int64[n, S]
    propensity: np.ndarray  # float64[n]
    strategy_propensity: np.ndarray  # float64[n, S]
    x: np.ndarray  # float64[n, d]
    reward: np.ndarray  # float64[n]
    strategy_reward: np.ndarray | None  # float64[n, S]
    n_clicks: np.ndarray  # int64[n]

    def __len__(self) -> int:
        return int(self.propensity.shape[0])

    @classmethod
    def from_records(cls, recs: Sequence[LogRecord], key: tuple[int, int]) -> BanditBatch:
        inputs = [r.ope_inputs() for r in recs]
        plans, xs = [p for p, _ in inputs], [x for _, x in inputs]
        names = plans[0].strategies
        for r, p in zip(recs, plans, strict=True):
            if p.strategies != names:
                raise DataError(f"{r.where}: plan over strategies {list(p.strategies)}, but "
                                f"earlier records use {list(names)}")
        d = {len(x) for x in xs}
        if len(d) != 1:
            raise DataError(f"{recs[0].where}: context features 'x' have different lengths {sorted(d)} in one log")
        given = [r.strategy_rewards for r in recs if r.strategy_rewards is not None]
        sr = np.stack(given) if len(given) == len(recs) else None
        return cls(key, names, np.array([p.depths for p in plans], dtype=np.int64),
                   np.array([p.propensity for p in plans]),
                   np.array([p.strategy_propensities for p in plans]),
                   np.stack(xs),
                   np.array([r.reward if r.reward is not None else float(bool(r.clicks)) for r in recs]),
                   sr, np.array([len(r.clicks) for r in recs], dtype=np.int64))


def _struct_fields(col: pa.ChunkedArray | pa.Array) -> list[str]:
    import pyarrow as pa

    return [f.name for f in col.type] if pa.types.is_struct(col.type) else []


def _columnar_parquet(batch: pa.RecordBatch, row0: int, key: tuple[int, int], reader: LogReader) -> BanditBatch | None:
    """Validate a Parquet record batch with array operations and keep the usable rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = batch.num_rows
    report, strict = reader.report, reader.strict
    names = batch.schema.names
    report.records += n
    ok = np.ones(n, dtype=bool)

    def flag(kind: str, bad: np.ndarray | np.bool_, message: Callable[[int], str]) -> None:
        rows = np.flatnonzero(bad & ok)
        for i in rows[:MAX_EXAMPLES]:
            report.add(kind, f"{reader.path}:row {row0 + int(i)}", message(int(i)), strict)
        if rows.size > MAX_EXAMPLES:
            report.counts[kind] += int(rows.size - MAX_EXAMPLES)
        ok[rows] = False

    missing = [c for c in ("plan", "propensities", "x") if c not in names]
    if missing:
        flag("malformed", np.ones(n, bool),
             lambda i: f"no {'/'.join(missing)} column: a foreign log cannot be evaluated off-policy")
        return None
    if "query" in names:
        q = batch.column("query")
        flag("missing_query", np.asarray(q.is_null().to_numpy(zero_copy_only=False)),
             lambda i: "missing required field 'query'")
    else:
        flag("missing_query", np.ones(n, bool), lambda i: "missing required field 'query'")
    plan = batch.column("plan")
    strategies = tuple(_struct_fields(plan))
    depths = np.stack([plan.field(s).fill_null(-1).to_numpy(zero_copy_only=False) for s in strategies],
                      axis=1).astype(np.int64) if strategies else np.zeros((n, 0), np.int64)
    flag("malformed", np.asarray(plan.is_null().to_numpy(zero_copy_only=False)) | (depths < 0).any(axis=1),
         lambda i: "no plan: a foreign record cannot be evaluated off-policy")
    props = batch.column("propensities")
    p = props.field("plan").fill_null(np.nan).to_numpy(zero_copy_only=False).astype(np.float64)
    if "strategies" in _struct_fields(props):
        sp_col = props.field("strategies")
        sp = np.stack([sp_col.field(s).fill_null(1.0).to_numpy(zero_copy_only=False) for s in strategies],
                      axis=1).astype(np.float64)
    else:
        sp = np.ones((n, len(strategies)))
    allp = np.column_stack([p, sp])
    bad_p = ~((allp > 0) & (allp <= 1)).all(axis=1)
    flag("bad_propensity", bad_p, lambda i: f"propensity of 'plan' is {p[i]} (or a strategy's is outside (0, 1])")
    # clicks on items not shown: compare (row, item code) pairs of the two list columns
    shown, clicks = batch.column("shown"), batch.column("clicks")
    n_clicks = pc.list_value_length(clicks).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    if n_clicks.sum():
        s_vals, c_vals = pc.list_flatten(shown), pc.list_flatten(clicks)
        s_rows = pc.list_parent_indices(shown).to_numpy()
        c_rows = pc.list_parent_indices(clicks).to_numpy()
        codes = pa.chunked_array([s_vals, c_vals]).combine_chunks().dictionary_encode().indices
        codes = codes.to_numpy().astype(np.int64)
        s_codes, c_codes = codes[: len(s_vals)], codes[len(s_vals):]
        s_len = np.bincount(s_rows, minlength=n)
        width = int(s_len.max()) if s_len.size else 0
        if width <= 64:
            # each row's shown codes in one padded row; a click is shown iff its row holds its code
            starts = np.concatenate([[0], np.cumsum(s_len)[:-1]])
            mat = np.full((n, max(width, 1)), -1, dtype=np.int64)
            mat[s_rows, np.arange(s_rows.size) - starts[s_rows]] = s_codes
            unshown = ~(mat[c_rows] == c_codes[:, None]).any(axis=1)
        else:
            span = int(codes.max()) + 1
            unshown = ~np.isin(c_rows.astype(np.int64) * span + c_codes,
                               s_rows.astype(np.int64) * span + s_codes, kind="sort")
        bad_rows = np.zeros(n, bool)
        bad_rows[c_rows[unshown]] = True
        flag("click_not_shown", bad_rows, lambda i: "a clicked item was not shown")
    xcol = batch.column("x")
    lens = pc.list_value_length(xcol).fill_null(-1).to_numpy(zero_copy_only=False)
    good_len = lens[ok & (lens >= 0)]
    d = int(np.bincount(good_len).argmax()) if good_len.size else 0
    flag("malformed", lens != d, lambda i: f"context features 'x' have length {lens[i]}, expected {d}")
    reward = None
    if "reward" in names:
        reward = batch.column("reward").fill_null(np.nan).to_numpy(zero_copy_only=False).astype(np.float64)
    good = np.flatnonzero(ok)
    sr = None
    if "strategy_rewards" in names and strategies:
        # per-strategy rewards only when every usable row has them: a missing one is not a 0
        src = batch.column("strategy_rewards")
        null_rows = np.asarray(src.is_null().to_numpy(zero_copy_only=False))
        have = set(_struct_fields(src))
        if not null_rows[good].any() and all(s in have for s in strategies):
            fields = [src.field(s) for s in strategies]
            if not any(np.asarray(f.is_null().to_numpy(zero_copy_only=False))[good].any() for f in fields):
                sr = np.stack([f.fill_null(0.0).to_numpy(zero_copy_only=False) for f in fields],
                              axis=1).astype(np.float64)
    report.valid += int(good.size)
    if good.size == 0:
        return None
    xs = batch.column("x").take(pa.array(good))
    x = pc.list_flatten(xs).to_numpy(zero_copy_only=False).astype(np.float64).reshape(good.size, d)
    r = reward[good] if reward is not None else (n_clicks[good] > 0).astype(np.float64)
    if reward is not None and np.isnan(r).any():
        r = np.where(np.isnan(r), (n_clicks[good] > 0).astype(np.float64), r)
    return BanditBatch(key, strategies, depths[good], p[good], sp[good], x, r,
                       None if sr is None else sr[good], n_clicks[good])


# ----------------------------------------------------------------------------------------------
# writers


class LogWriter:
    """Writes records to JSONL (one line each) or Parquet (a row group every ``ROW_GROUP_ROWS``).

    Memory is bounded by one row group. Use as a context manager; the file is complete after
    ``close``.
    """

    def __init__(self, path: str | os.PathLike, strategies: Sequence[str] = (),
                 row_group_rows: int = ROW_GROUP_ROWS):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.format = log_format(self.path)
        self.strategies = tuple(strategies)
        self.row_group_rows = int(row_group_rows)
        self.n_written = 0
        self._buf: list[LogRecord] = []
        self._pq: pq.ParquetWriter | None = None
        self._fh = self.path.open("w", encoding="utf-8") if self.format == "jsonl" else None

    def write(self, rec: LogRecord) -> None:
        if self._fh is not None:
            self._fh.write(json.dumps(rec.to_json(), separators=(",", ":")) + "\n")
        else:
            self._buf.append(rec)
            if len(self._buf) >= self.row_group_rows:
                self._flush()
        self.n_written += 1

    def _schema(self) -> pa.Schema:
        import pyarrow as pa

        s = self.strategies
        return pa.schema([
            ("event_id", pa.string()), ("ts", pa.float64()), ("query", pa.string()),
            ("context", pa.string()), ("shown", pa.list_(pa.string())), ("clicks", pa.list_(pa.string())),
            ("plan", pa.struct([(n, pa.int32()) for n in s])),
            ("propensities", pa.struct([("plan", pa.float64()),
                                        ("strategies", pa.struct([(n, pa.float64()) for n in s]))])),
            ("x", pa.list_(pa.float64())), ("reward", pa.float64()),
            ("strategy_rewards", pa.struct([(n, pa.float64()) for n in s])),
        ])

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._buf:
            return
        recs = self._buf
        if not self.strategies:
            first_plan = next((r.plan for r in recs if r.plan is not None), None)
            self.strategies = first_plan.strategies if first_plan is not None else ("none",)
        schema = self._schema()

        def plan_of(r: LogRecord) -> dict[str, int] | None:
            return None if r.plan is None else dict(zip(r.plan.strategies, r.plan.depths, strict=True))

        def props_of(r: LogRecord) -> dict[str, Any] | None:
            if r.plan is None:
                return None
            return {"plan": r.plan.propensity,
                    "strategies": dict(zip(r.plan.strategies, r.plan.strategy_propensities, strict=True))}

        def sr_of(r: LogRecord) -> dict[str, float] | None:
            if r.plan is None or r.strategy_rewards is None:
                return None
            return dict(zip(r.plan.strategies, (float(v) for v in r.strategy_rewards), strict=True))

        table = pa.Table.from_pydict({
            "event_id": [r.event_id for r in recs], "ts": [r.ts for r in recs],
            "query": [r.query for r in recs],
            "context": [json.dumps(dict(r.context), separators=(",", ":")) for r in recs],
            "shown": [list(r.shown) for r in recs], "clicks": [list(r.clicks) for r in recs],
            "plan": [plan_of(r) for r in recs], "propensities": [props_of(r) for r in recs],
            "x": [None if r.x is None else r.x.tolist() for r in recs],
            "reward": [r.reward for r in recs], "strategy_rewards": [sr_of(r) for r in recs],
        }, schema=schema)
        if self._pq is None:
            self._pq = pq.ParquetWriter(self.path, schema, compression="zstd")
        self._pq.write_table(table, row_group_size=self.row_group_rows)
        self._buf = []

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            return
        self._flush()
        if self._pq is None:  # an empty log is still a valid (empty) Parquet file
            import pyarrow.parquet as pq

            self.strategies = self.strategies or ("none",)  # Parquet cannot hold an empty struct
            pq.write_table(self._schema().empty_table(), self.path)
        else:
            self._pq.close()
            self._pq = None

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------
# rewards of logged decisions (the engine's definition, ltrr.reward)


def record_from_decision(decision: Any, clicked_ids: Sequence[str], reward: RewardSpec,
                         offset: int = 0, context: Mapping[str, Any] | None = None) -> LogRecord:
    """A log record from an engine decision (or logged event) and the ids clicked on its page,
    with the plan reward and per-strategy credit the engine gives it (``reward``: the engine's
    :class:`~ltrr.reward.RewardSpec`, kind, credit, cost and page size)."""
    cands = decision.candidates
    page_rows = np.asarray(decision.page if isinstance(decision, Decision) else decision.page_rows)
    clicked_set = set(clicked_ids)
    page_ids = tuple(decision.page_ids)
    clicked_rows = np.array([r for r, i in zip(page_rows, page_ids, strict=True) if i in clicked_set],
                            dtype=np.int64)
    in_clicks = np.isin(cands.items, clicked_rows)
    strategy_ms = decision.strategy_ms
    value, per = decision_rewards(reward, cands.found, in_clicks, decision.plan.depths,
                                  page_weights(reward, cands.items, page_rows),
                                  strategy_ms if strategy_ms is not None and np.size(strategy_ms) else None)
    return LogRecord(offset, f"event {decision.event_id}", decision.event_id, float(decision.ts),
                     decision.query, dict(context if context is not None else decision.context),
                     page_ids, tuple(i for i in page_ids if i in clicked_set), decision.plan,
                     np.asarray(decision.x, dtype=np.float64), value, per)


def export_event_log(events_path: str | os.PathLike, out: str | os.PathLike, reward: RewardSpec,
                     batch: int = 1000) -> int:
    """Write the engine's SQLite event log as a click log (with plan, propensities and ``x``),
    rewards credited by ``reward``.

    Events are read in log order, ``batch`` at a time; clicks are the feedback events with a
    positive value. Returns the number of records written.
    """
    from ltrr.store.events import EventLog

    if not Path(events_path).exists():
        raise DataError(f"{events_path}: no such event log")
    log = EventLog(str(events_path))
    try:
        with LogWriter(out) as writer:
            for ev, clicks in log.iter_events(batch=batch):
                rec = record_from_decision(ev, [i for i, v in clicks.items() if v > 0], reward,
                                           writer.n_written)
                if not writer.strategies and rec.plan is not None:
                    writer.strategies = rec.plan.strategies
                writer.write(rec)
            return writer.n_written
    finally:
        log.close()


def convert_log(src: str | os.PathLike, dst: str | os.PathLike, *, strict: bool = False,
                row_group_rows: int = ROW_GROUP_ROWS) -> LogReport:
    """Rewrite a click log in another format (by ``dst``'s suffix), streaming; bad records are
    skipped (or fatal when ``strict``) and reported. The output is written to a temporary file
    and renamed at the end: an empty or unusable log raises DataError and leaves nothing."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.stem}.tmp-{os.getpid()}{dst.suffix}")
    try:
        reader = LogReader(src, strict=strict)
        with LogWriter(tmp, row_group_rows=row_group_rows) as writer:
            for rec in reader:
                if rec.plan is not None and not writer.strategies:
                    writer.strategies = rec.plan.strategies
                writer.write(rec)
        reader.report.check_nonempty()
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return reader.report
