"""``ltrr replay``: stream a click log through the Engine (a thin layer over
:func:`ltrr.offline.replay.replay`)."""

from __future__ import annotations

import json

import click


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
def replay(log_path: str, config_path: str | None, out_dir: str, checkpoint_every: int, window: int,
           strict: bool, progress: bool, ranker: bool, report: bool) -> None:
    """Replay a click log: the memory, policy and ranker learn as they would have online.

    Foreign logs (query, shown, clicks) teach the policy with full information (every plan's
    reward); ltrr logs (with plan and propensities) with bandit feedback. Metrics over time go to
    OUT/metrics.jsonl, each line saying which numbers are which.
    """
    from ltrr.config import default_config, load_config
    from ltrr.offline.replay import replay as run

    config = load_config(config_path) if config_path else default_config()
    result = run(config, log_path, out_dir, checkpoint_every=checkpoint_every, window=window,
                 strict=strict, progress=progress, train_ranker=ranker)
    if report:
        from ltrr.offline.report import replay_report

        replay_report(out_dir)
    m = result.metrics
    rep = result.report
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
    click.echo(json.dumps({"out": str(result.out), "metrics": f"{result.out}/metrics.jsonl"}))
