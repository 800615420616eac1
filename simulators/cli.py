"""``ltrr demo`` and ``ltrr simulate``: online sessions of simulated users, registered as
commands in :mod:`ltrr.registry` (the ``ltrr`` package never imports the simulators)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from ltrr import registry
from ltrr.config import EngineConfig
from simulators.click_models import PRESETS as CLICK_PRESETS

DEMO_QUERIES = 2000


def load_engine_config(path: str | None) -> EngineConfig:
    """The TOML config at ``path``, or the embedded demo config."""
    from ltrr.config import default_config, load_config

    return load_config(path) if path else default_config()


#: ``ltrr simulate`` without ``--config``: lexical, semantic and click-memory candidates under the
#: default learned policy, on whatever collection is given (its ``title`` and ``text`` indexed)
SIMULATE_CONFIG: dict = {
    "strategies": [
        {"name": "bm25", "depths": [10, 50, 100]},
        {"name": "dense", "depths": [0, 10, 50, 100]},
        {"name": "memory", "depths": [0, 10, 50]},
    ],
    "catalog": {"text_fields": ["title", "text"]},
}


def simulate_config(path: str | None) -> EngineConfig:
    """``--config``, or :data:`SIMULATE_CONFIG` with the demo's policy."""
    from ltrr.config import DEFAULT_CONFIG, parse_config

    if path:
        return load_engine_config(path)
    return parse_config({**SIMULATE_CONFIG, "policy": DEFAULT_CONFIG["policy"]}, "<ltrr simulate default config>")


#: the click models and presets the commands offer
CLICK_MODELS = registry.names("click_model")
PRESETS = sorted(CLICK_PRESETS)


def checked_config(cfg: EngineConfig, path: str | None) -> EngineConfig:
    """``cfg`` after :func:`ltrr.builder.check_config` (components and parameters), before work."""
    from ltrr.builder import check_config

    check_config(cfg, where=path or "<default config>")
    return cfg


def seed_list(seed: int, seeds: int) -> list[int]:
    if seeds < 1:
        raise click.BadParameter(f"must be >= 1; got {seeds}", param_hint="--seeds")
    return list(range(seed, seed + seeds))


def finish(out: Path, runs: dict, report: dict, title: str, as_json: bool, header: str, t0: float) -> None:
    """Write report.json and report.html to ``out``; print JSON, or the table and where they are."""
    from ltrr.store.persist import write_json
    from simulators.report import write_learning_report
    from simulators.session import format_table

    out.mkdir(parents=True, exist_ok=True)
    report["wall_seconds"] = round(time.perf_counter() - t0, 1)
    write_json(out / "report.json", report)
    html_path = write_learning_report(out, runs, report, title)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(header)
    click.echo(format_table(report))
    click.echo(f"report: {out / 'report.json'}, {html_path}  ({report['wall_seconds']} s)")


SEEDS_HELP = "Run this many seeds (seed, seed+1, ...): means and spread over seeds in the table."


@click.command()
@click.option("--queries", "n_queries", default=DEMO_QUERIES, show_default=True, type=click.IntRange(min=1),
              help="Simulated queries per policy.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Seed of the query stream, clicks and policies.")
@click.option("--seeds", "n_seeds", default=1, show_default=True, type=click.IntRange(min=1), help=SEEDS_HELP)
@click.option("--config", type=click.Path(dir_okay=False), default=None,
              help="Engine config (TOML); default: the embedded demo config (see `ltrr config show`).")
@click.option("--pool", default=None, type=click.IntRange(min=1),
              help="Distinct queries in the stream (default: queries/4).")
@click.option("--click-model", default="pbm", show_default=True, type=click.Choice(CLICK_MODELS),
              help="Click model.")
@click.option("--preset", default="navigational", show_default=True, type=click.Choice(PRESETS),
              help="Click model parameterization.")
@click.option("--out", type=click.Path(file_okay=False), default="runs/demo", show_default=True,
              help="Directory for report.json and report.html.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of a table.")
def demo(n_queries, seed, n_seeds, config, pool, click_model, preset, out, as_json):
    """Run the whole loop on the shipped movie catalog.

    An online session of simulated queries (titles, typos, people, attributes, paraphrases; relevance
    derived from the catalog fields) for the learned policy and the baselines (each strategy
    alone in its own order, all strategies at maximum depth ordered by the learned ranker, and
    the same union by RRF). Prints a table, each run's regret against the best fixed plan in
    hindsight (every plan valued with the ranker on the all-max run), and writes report.json and
    report.html (learning curves, plans and latency over rounds).
    """
    from ltrr import progress
    from ltrr.builder import check_config
    from ltrr.catalog import Catalog
    from simulators.movies import MovieQueryGenerator
    from simulators.session import compare_over_seeds

    seeds = seed_list(seed, n_seeds)
    cfg = checked_config(load_engine_config(config), config)
    t0 = time.perf_counter()
    with progress.step(f"reading the catalog {cfg.catalog.path}"):
        catalog = Catalog.from_jsonl(cfg.catalog.path, limit=cfg.catalog.limit)
    check_config(cfg, catalog, where=config or "<default config>")
    streams = {s: MovieQueryGenerator(catalog, seed=s).stream(n_queries, pool or max(n_queries // 4, 1), seed=s)
               for s in seeds}
    runs, report = compare_over_seeds(cfg, catalog, streams, click_model, preset)
    report["catalog"] = {"path": cfg.catalog.path, "items": len(catalog)}
    finish(Path(out), runs, report, "ltrr demo", as_json,
           f"ltrr demo: {n_queries} queries per policy on {len(catalog)} films, {click_model}/{preset} "
           f"clicks, seeds {seeds}", t0)


@click.command()
@click.option("--catalog", "catalog_path", required=True, type=click.Path(dir_okay=False),
              help="Catalog/corpus JSONL ({id, title, text}).")
@click.option("--queries", "queries_path", required=True, type=click.Path(dir_okay=False),
              help="Queries JSONL ({qid, query}).")
@click.option("--qrels", "qrels_path", required=True, type=click.Path(dir_okay=False), help="TREC qrels.")
@click.option("--rounds", default=3000, show_default=True, type=click.IntRange(min=1),
              help="Queries sampled (with replacement) per run.")
@click.option("--click-model", default="pbm", show_default=True, type=click.Choice(CLICK_MODELS))
@click.option("--preset", default="informational", show_default=True, type=click.Choice(PRESETS))
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--seeds", "n_seeds", default=1, show_default=True, type=click.IntRange(min=1), help=SEEDS_HELP)
@click.option("--config", type=click.Path(dir_okay=False), default=None,
              help="Engine config; its catalog path is replaced by --catalog. Default: bm25, dense and "
                   "the click memory under the demo's learned policy.")
@click.option("--out", type=click.Path(file_okay=False), default="runs/simulate", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of a table.")
def simulate(catalog_path, queries_path, qrels_path, rounds, click_model, preset, seed, n_seeds, config, out,
             as_json):
    """Online sessions on any collection with relevance judgments.

    Judged queries are sampled repeatedly; clicks come from the click model over the judged
    grades (the standard online learning-to-rank protocol). The learned configuration runs as
    the engine does by default (RRF and a fixed plan serve until the learned ranker and policy
    prove better); the baselines are each strategy alone in its own order (bm25_only, ...),
    all_max (every strategy at its largest depth ordered by the learned ranker) and rrf_all_max.
    Writes report.json and report.html (learning curves with a band over seeds, plans, latency).
    """
    from ltrr.builder import check_config
    from simulators.collections import IRCollection
    from simulators.session import compare_over_seeds

    seeds = seed_list(seed, n_seeds)
    cfg = simulate_config(config)
    cfg = cfg.model_copy(update={"catalog": cfg.catalog.model_copy(update={"path": catalog_path, "limit": None})})
    check_config(cfg, where=config or "<ltrr simulate default config>")
    t0 = time.perf_counter()
    coll = IRCollection.load(catalog_path, queries_path, qrels_path)
    check_config(cfg, coll.catalog, where=config or "<ltrr simulate default config>")
    streams = {s: coll.stream(rounds, s) for s in seeds}
    runs, report = compare_over_seeds(cfg, coll.catalog, streams, click_model, preset,
                                      relevance="Relevance is the collection's human judgments (qrels); "
                                                "clicks are simulated from them by the click model.")
    report["collection"] = {"catalog": catalog_path, "queries": queries_path, "qrels": qrels_path,
                            "items": len(coll.catalog)}
    finish(Path(out), runs, report, "ltrr simulate", as_json,
           f"ltrr simulate: {rounds} rounds per run on {len(coll.catalog)} documents, {click_model}/{preset} "
           f"clicks, seeds {seeds}", t0)


@click.command("simulate")
@click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False),
              help="Engine config (TOML); default: the demo config.")
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@click.option("--queries", default=1000, show_default=True, type=click.IntRange(min=1))
@click.option("--pool", default=500, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--foreign", is_flag=True, help="Write only query/shown/clicks (a foreign log).")
@click.option("--frozen", is_flag=True, help="Do not learn from the simulated clicks.")
def simulate_log(config_path: str | None, out: str, queries: int, pool: int, seed: int, foreign: bool,
             frozen: bool) -> None:
    """Serve simulated movie queries with an engine and write its click log."""
    from ltrr.config import default_config, load_config
    from simulators.simlog import generate_log

    config = checked_config(load_config(config_path) if config_path else default_config(), config_path)
    res = generate_log(config, out, queries, pool_size=pool, seed=seed, learn=not frozen, foreign=foreign)
    click.echo(f"wrote {res.records} searches to {out}; mean reward {res.reward.mean():.4f}")
