"""``ltrr replay``: stream a click log through the Engine (a thin layer over
:func:`ltrr.offline.replay.replay`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click

from ltrr.errors import LtrrError


@click.command()
@click.option("--log", "log_path", required=True, type=click.Path(dir_okay=False),
              help="Click log, JSONL or Parquet (one search per record).")
@click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False),
              help="Engine config (TOML); default: the demo config.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output directory: metrics.jsonl, checkpoint/, engine/, report.html. An existing "
                   "checkpoint there is resumed.")
@click.option("--checkpoint-every", default=10_000, show_default=True, type=click.IntRange(min=0),
              help="Records between checkpoints (0 = none).")
@click.option("--window", default=1_000, show_default=True, type=click.IntRange(min=1),
              help="Records per metrics line.")
@click.option("--strict", is_flag=True, help="Stop at the first bad record instead of skipping it.")
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option("--ranker/--no-ranker", default=True, show_default=True,
              help="Give the ranker training rows (features of shown items) and retrain it; "
                   "--no-ranker replays only the retrieval decision and the memory, faster.")
@click.option("--report/--no-report", default=True, show_default=True, help="Write report.html and PNGs.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead of text.")
def replay(log_path: str, config_path: str | None, out_dir: str, checkpoint_every: int, window: int,
           strict: bool, progress: bool, ranker: bool, report: bool, as_json: bool) -> None:
    """Replay a click log: the memory, policy and ranker learn as they would have online.

    Foreign logs (query, shown, clicks) teach the policy with full information (every plan's
    reward); ltrr logs (with plan and propensities) with bandit feedback. Metrics over time go to
    OUT/metrics.jsonl, each line saying which numbers are which.

    The config and the log are checked first (with --strict, every record of the log), so a bad
    input stops the command before anything is written; a fresh replay that meets bad input later
    removes what it wrote (an interrupted one keeps its checkpoint, to resume).
    """
    from ltrr import progress as prog
    from ltrr.builder import check_config
    from ltrr.config import default_config, load_config
    from ltrr.offline.logs import LogReader
    from ltrr.offline.replay import replay as run

    config = load_config(config_path) if config_path else default_config()
    check_config(config, where=config_path or "<default config>")
    reader = LogReader(log_path, strict=strict)  # a missing, empty or unreadable log fails here
    if strict:
        for _ in prog.bar(reader, None, "checking the log", " records"):
            pass
        reader.report.check_nonempty()
    out = Path(out_dir)
    fresh = not (out / "checkpoint" / "state.json").exists()
    existed = {p.name for p in out.iterdir()} if out.is_dir() else set()
    created_dir = not out.exists()
    try:
        result = run(config, log_path, out_dir, checkpoint_every=checkpoint_every, window=window,
                     strict=strict, progress=progress and not prog.quiet(), train_ranker=ranker)
        if report:
            from ltrr.offline.report import replay_report

            replay_report(out_dir)
    except LtrrError:  # bad input found on the way: leave nothing (an interrupt keeps its checkpoint)
        if fresh:
            _remove_outputs(out, existed, created_dir)
        raise
    m = result.metrics
    rep = result.report
    if as_json:
        click.echo(json.dumps({"out": str(result.out), "metrics": f"{result.out}/metrics.jsonl",
                               "summary": f"{result.out}/summary.json", **{k: m[k] for k in (
                                   "records", "usable", "full_information_records", "bandit_feedback_records",
                                   "cumulative_reward", "cumulative_best_in_hindsight", "cumulative_regret",
                                   "seconds", "resumed_from")}, "log": m["log"]}, indent=2))
        return
    click.echo(f"replayed {m['records']} records ({rep.valid} usable, {rep.skipped} skipped) in "
               f"{m['seconds']:.1f} s, {m['records_per_s']:.0f} records/s"
               + (f", resumed at record {result.resumed_from}" if result.resumed_from else ""))
    click.echo(f"  full-information: {m['full_information_records']} records; bandit-feedback: "
               f"{m['bandit_feedback_records']} records")
    click.echo(f"  cumulative reward {m['cumulative_reward']:.2f}, best plan in hindsight "
               f"{m['cumulative_best_in_hindsight']:.2f}, regret {m['cumulative_regret']:.2f} "
               "(full-information)")
    if rep.skipped or any(rep.counts.values()):
        click.echo("  log problems: " + rep.summary(), err=True)
    click.echo(f"  wrote {result.out}/ (metrics.jsonl, summary.json, engine/"
               + (", report.html)" if report else ")"))


def _remove_outputs(out: Path, existed: set[str], created_dir: bool) -> None:
    """Delete what a failed fresh replay wrote in ``out`` (nothing that was there before)."""
    if not out.is_dir():
        return
    for path in out.iterdir():
        if path.name in existed:
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if created_dir and not any(out.iterdir()):
        out.rmdir()
