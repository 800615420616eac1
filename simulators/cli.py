"""``ltrr demo`` and ``ltrr simulate``: online sessions of simulated users, registered as
commands in :mod:`ltrr.registry` (the ``ltrr`` package never imports the simulators)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from ltrr.config import EngineConfig

DEMO_QUERIES = 2000


def load_engine_config(path: str | None) -> EngineConfig:
    """The TOML config at ``path``, or the embedded demo config."""
    from ltrr.config import default_config, load_config

    return load_config(path) if path else default_config()


def _write_report(out: Path, report: dict) -> Path:
    from ltrr.store.persist import write_json

    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.json"
    write_json(path, report)
    return path


@click.command()
@click.option("--queries", "n_queries", default=DEMO_QUERIES, show_default=True,
              help="Simulated queries per policy.")
@click.option("--seed", default=0, show_default=True, help="Seed of the query stream, clicks and policies.")
@click.option("--config", type=click.Path(dir_okay=False), default=None,
              help="Engine config (TOML); default: the embedded demo config (see `ltrr config show`).")
@click.option("--pool", default=None, type=int, help="Distinct queries in the stream (default: queries/4).")
@click.option("--click-model", default="pbm", show_default=True, help="Click model: pbm, cascade or dbn.")
@click.option("--preset", default="navigational", show_default=True,
              help="Click model parameterization: perfect, navigational or informational.")
@click.option("--out", type=click.Path(file_okay=False), default="runs/demo", show_default=True,
              help="Directory for report.json.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of a table.")
def demo(n_queries, seed, config, pool, click_model, preset, out, as_json):
    """Run the whole loop on the shipped movie catalog.

    An online session of simulated queries (titles, typos, people, attributes, paraphrases; relevance
    derived from the catalog fields) for the learned policy and the fixed baselines (each strategy
    alone, all strategies at maximum depth, RRF). Prints a table, each run's regret against the
    best fixed plan in hindsight (every plan valued with the ranker on the all-max run), and
    writes report.json.
    """
    from ltrr.catalog import Catalog
    from simulators.movies import MovieQueryGenerator
    from simulators.session import compare_policies, format_table

    cfg = load_engine_config(config).model_copy(update={"seed": seed})
    t0 = time.perf_counter()
    catalog = Catalog.from_jsonl(cfg.catalog.path, limit=cfg.catalog.limit)
    gen = MovieQueryGenerator(catalog, seed=seed)
    stream = gen.stream(n_queries, pool or max(n_queries // 4, 1), seed=seed)
    _results, report = compare_policies(cfg, catalog, stream, click_model, preset, seed=seed)
    report["catalog"] = {"path": cfg.catalog.path, "items": len(catalog)}
    report["wall_seconds"] = round(time.perf_counter() - t0, 1)
    path = _write_report(Path(out), report)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(f"ltrr demo: {n_queries} queries per policy on {len(catalog)} films, "
                   f"{click_model}/{preset} clicks, seed {seed}")
        click.echo(format_table(report))
        click.echo(f"report: {path}  ({report['wall_seconds']} s)")


@click.command()
@click.option("--catalog", "catalog_path", required=True, type=click.Path(dir_okay=False),
              help="Catalog/corpus JSONL ({id, title, text}).")
@click.option("--queries", "queries_path", required=True, type=click.Path(dir_okay=False),
              help="Queries JSONL ({qid, query}).")
@click.option("--qrels", "qrels_path", required=True, type=click.Path(dir_okay=False), help="TREC qrels.")
@click.option("--rounds", default=2000, show_default=True, help="Queries sampled (with replacement).")
@click.option("--click-model", default="pbm", show_default=True, help="pbm, cascade or dbn.")
@click.option("--preset", default="informational", show_default=True,
              help="perfect, navigational or informational.")
@click.option("--seed", default=0, show_default=True)
@click.option("--config", type=click.Path(dir_okay=False), default=None,
              help="Engine config; its catalog path is replaced by --catalog.")
@click.option("--out", type=click.Path(file_okay=False), default="runs/simulate", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def simulate(catalog_path, queries_path, qrels_path, rounds, click_model, preset, seed, config, out, as_json):
    """Online session on any collection with relevance judgments.

    Judged queries are sampled repeatedly; clicks come from the click model over the judged
    grades (the standard online learning-to-rank protocol).
    """
    from ltrr.config import parse_config
    from simulators.collections import IRCollection
    from simulators.session import compare_policies, format_table

    if config:
        cfg = load_engine_config(config)
    else:
        cfg = parse_config({"strategies": [{"name": "bm25"}, {"name": "memory", "depths": [0, 10, 50]}],
                            "catalog": {"text_fields": ["title", "text"]}})
    cfg = cfg.model_copy(update={"seed": seed, "catalog": cfg.catalog.model_copy(update={"path": catalog_path})})
    coll = IRCollection.load(catalog_path, queries_path, qrels_path)
    stream = coll.stream(rounds, seed)
    _results, report = compare_policies(cfg, coll.catalog, stream, click_model, preset, seed=seed)
    path = _write_report(Path(out), report)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(format_table(report))
        click.echo(f"report: {path}")


@click.command("simulate")
@click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False),
              help="Engine config (TOML); default: the demo config.")
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@click.option("--queries", default=1000, show_default=True, type=click.IntRange(min=1))
@click.option("--pool", default=500, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--foreign", is_flag=True, help="Write only query/shown/clicks (a foreign log).")
@click.option("--frozen", is_flag=True, help="Do not learn from the simulated clicks.")
def simulate_log(config_path: str | None, out: str, queries: int, pool: int, seed: int, foreign: bool,
             frozen: bool) -> None:
    """Serve simulated movie queries with an engine and write its click log."""
    from ltrr.config import default_config, load_config
    from simulators.simlog import generate_log

    config = load_config(config_path) if config_path else default_config()
    res = generate_log(config, out, queries, pool_size=pool, seed=seed, learn=not frozen, foreign=foreign)
    click.echo(f"wrote {res.records} searches to {out}; mean reward {res.reward.mean():.4f}")
