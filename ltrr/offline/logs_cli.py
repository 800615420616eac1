"""``ltrr log``: check, convert and export click logs (thin commands over
:mod:`ltrr.offline.logs`); ``ltrr log simulate`` is registered by the simulators."""

from __future__ import annotations

import json

import click

from ltrr.cli import RegistryGroup


@click.group(cls=RegistryGroup)
def log() -> None:
    """Click logs: check, convert (JSONL <-> Parquet), export the engine's event log, simulate."""


_FORMAT_OPTIONS = [
    click.option("--format", "log_format", default=None,
                 help="Log format: ltrr, obd, dsjson or columns (default: detected)."),
    click.option("--map", "map_entries", multiple=True, metavar="KEY=COLUMN",
                 help="Column mapping (format columns): action, reward|cost, propensity, position, context."),
    click.option("--mapping", "mapping_file", default=None, type=click.Path(dir_okay=False),
                 help="Column mapping as a TOML file."),
]


def _format_options(fn):
    for opt in reversed(_FORMAT_OPTIONS):
        fn = opt(fn)
    return fn


def _foreign(path: str, log_format: str | None, map_entries, mapping_file):
    """``(format, mapping)`` of a log."""
    from ltrr.offline.formats import ColumnMapping, detect_format

    mapping = ColumnMapping.parse(map_entries, mapping_file)
    return detect_format(path, log_format, mapping), mapping


@log.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--strict", is_flag=True, help="Stop at the first bad record.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of a summary.")
@_format_options
def check(path: str, strict: bool, as_json: bool, log_format, map_entries, mapping_file) -> None:
    """Validate a log and report its problems with file:line examples.

    Exit status: 0 when the log is clean, 1 when it has problems (bad records were found, or
    none carries what off-policy evaluation needs), 2 when it cannot be read at all.
    """
    import sys

    from ltrr.offline.formats import read_action_log
    from ltrr.offline.logs import LogReader

    fmt, mapping = _foreign(path, log_format, map_entries, mapping_file)
    if fmt != "ltrr":
        alog = read_action_log(path, fmt, mapping)  # raises (exit 2) at the first bad value
        info = {"path": path, "format": fmt, "records": len(alog) + alog.skipped, "valid": len(alog),
                "skipped": alog.skipped, "n_actions": alog.n_actions, "len_list": alog.len_list,
                "context_features": int(alog.context.shape[1]),
                "deterministic_logger": bool((alog.pscore >= 1.0).all())}
        click.echo(json.dumps(info) if as_json else
                   f"{info['records']} records, {len(alog)} usable ({fmt}); {alog.n_actions} actions, "
                   f"{alog.len_list} positions, {info['context_features']} context features")
        if info["deterministic_logger"]:
            click.echo("problem: every propensity is 1 (a deterministic logger): the log supports no "
                       "inverse-propensity evaluation of other policies", err=True)
            sys.exit(1)
        return
    reader = LogReader(path, strict=strict)
    n_plan = sum(1 for rec in reader if rec.plan is not None)
    reader.report.check_nonempty()
    click.echo(json.dumps(reader.report.to_dict() | {"with_plan": n_plan, "format": "ltrr"}) if as_json
               else f"{reader.report.summary()}; {n_plan} with plan and propensities")
    if reader.report.skipped or any(reader.report.counts.values()):
        sys.exit(1)


@log.command()
@click.argument("src", type=click.Path(dir_okay=False))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--strict", is_flag=True, help="Stop at the first bad record instead of skipping it.")
@click.option("--row-group-rows", default=65_536, show_default=True, type=click.IntRange(min=1),
              help="Parquet row-group size (the unit of sharding).")
@_format_options
def convert(src: str, dst: str, strict: bool, row_group_rows: int, log_format, map_entries, mapping_file) -> None:
    """Rewrite SRC as DST (format from DST's suffix: .parquet/.pq, .csv or JSONL).

    ltrr logs stay ltrr logs; foreign logs (obd, dsjson, columns) are written in the normalized
    columns layout (action, position, reward, propensity, x) that ``--format columns`` reads
    without a mapping. Nothing is written when SRC is empty or unusable.
    """
    from ltrr.offline.formats import read_action_log
    from ltrr.offline.formats.writer import write_action_log
    from ltrr.offline.logs import convert_log

    fmt, mapping = _foreign(src, log_format, map_entries, mapping_file)
    if fmt != "ltrr":
        n = write_action_log(read_action_log(src, fmt, mapping), dst)
        click.echo(f"wrote {n} records to {dst} ({fmt} -> columns)")
        return
    report = convert_log(src, dst, strict=strict, row_group_rows=row_group_rows)
    click.echo(f"wrote {report.valid} records to {dst}; " + report.summary())


@log.command()
@click.option("--events", "events_path", required=True, type=click.Path(dir_okay=False),
              help="The engine's SQLite event log (store.events_path).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="JSONL or Parquet click log.")
@click.option("--cost", default=None, type=float,
              help="Cost per candidate in the logged rewards (default: the default config's).")
@click.option("--reward-kind", type=click.Choice(["any_click", "click_dcg"]), default="any_click",
              show_default=True, help="The engine's reward.kind, for the logged rewards.")
@click.option("--credit", type=click.Choice(["full", "split"]), default="split", show_default=True,
              help="The engine's reward.credit, for the logged per-strategy rewards.")
@click.option("--page-size", default=10, show_default=True, type=click.IntRange(min=1))
def export(events_path: str, out: str, cost: float | None, reward_kind: str, credit: str, page_size: int) -> None:
    """Export the engine's event log as a click log with plan, propensities and x."""
    from ltrr.config import RewardConfig
    from ltrr.offline.logs import export_event_log
    from ltrr.reward import RewardSpec

    spec = RewardSpec(reward_kind, credit, RewardConfig().cost_per_candidate if cost is None else cost, page_size)
    n = export_event_log(events_path, out, spec)
    click.echo(f"exported {n} decisions to {out}")
