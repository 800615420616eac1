"""``ltrr log``: check, convert and export click logs (thin commands over
:mod:`ltrr.offline.logs`); ``ltrr log simulate`` is registered by the simulators."""

from __future__ import annotations

import json

import click

from ltrr.cli import RegistryGroup


@click.group(cls=RegistryGroup)
def log() -> None:
    """Click logs: check, convert (JSONL <-> Parquet), export the engine's event log, simulate."""


@log.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--strict", is_flag=True, help="Stop at the first bad record.")
def check(path: str, strict: bool) -> None:
    """Validate a click log and report its problems with file:line examples."""
    from ltrr.offline.logs import LogReader

    reader = LogReader(path, strict=strict)
    n_plan = sum(1 for rec in reader if rec.plan is not None)
    reader.report.check_nonempty()
    click.echo(reader.report.summary())
    click.echo(json.dumps(reader.report.to_dict() | {"with_plan": n_plan}))


@log.command()
@click.argument("src", type=click.Path(dir_okay=False))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--strict", is_flag=True, help="Stop at the first bad record instead of skipping it.")
@click.option("--row-group-rows", default=65_536, show_default=True, type=click.IntRange(min=1),
              help="Parquet row-group size (the unit of sharding).")
def convert(src: str, dst: str, strict: bool, row_group_rows: int) -> None:
    """Rewrite SRC as DST (format from DST's suffix: .parquet/.pq or JSONL)."""
    from ltrr.offline.logs import convert_log

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
