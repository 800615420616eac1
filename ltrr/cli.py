"""The ``ltrr`` command line: thin subcommands over the Engine, the simulators and the metrics.

Logging is configured here and nowhere else. Errors ltrr raises on purpose print one line
(``error: ...``) and exit with status 2; no stack traces for bad input.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

import click

from ltrr.errors import LtrrError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEMO_QUERIES = 2000


#: subcommands that live next to the code they drive, imported only when invoked
LAZY_COMMANDS: dict[str, str] = {
    "replay": "ltrr.offline.replay_cli:replay",
    "ope": "ltrr.offline.ope_cli:ope",
    "log": "ltrr.offline.logs_cli:log",
    "serve": "ltrr.serve.cli:serve",
    "train-ranker": "ltrr.ranking.cli:train_ranker",
    "explain": "ltrr.ranking.cli:explain",
    "index": "strategies.dense_cli:index",
    "complete": "strategies.xmr.cli:complete",
}


class _Group(click.Group):
    def list_commands(self, ctx):
        return sorted({*super().list_commands(ctx), *(LAZY_COMMANDS if self.name == "main" else ())})

    def get_command(self, ctx, name):
        cmd = super().get_command(ctx, name)
        if cmd is None and self.name == "main" and name in LAZY_COMMANDS:
            import importlib

            module, _, attr = LAZY_COMMANDS[name].partition(":")
            try:
                cmd = getattr(importlib.import_module(module), attr)
            except ModuleNotFoundError:
                return None
        return cmd

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LtrrError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """ltrr: learning to rank and retrieve.

    Candidate generators (BM25, click memory, ...) are chosen and sized per query by a
    contextual bandit; their union is reranked by LambdaMART; click feedback updates the policy,
    the click memory and the ranker.
    """
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")


def _load_cfg(config: str | None):
    from ltrr.config import default_config, load_config

    return load_config(config) if config else default_config()


def _write_report(out: Path, report: dict) -> Path:
    from ltrr.store.persist import write_json

    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.json"
    write_json(path, report)
    return path


@main.command()
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

    cfg = _load_cfg(config).model_copy(update={"seed": seed})
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


@main.command()
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
        cfg = _load_cfg(config)
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


@main.command()
@click.option("--strategy", required=True,
              help="Registry name of the strategy (e.g. bm25), or several comma-separated names to fuse.")
@click.option("--catalog", "catalog_path", required=True, type=click.Path(dir_okay=False))
@click.option("--queries", "queries_path", required=True, type=click.Path(dir_okay=False))
@click.option("--k", default=1000, show_default=True, help="Results per query.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="TREC run file to write.")
@click.option("--text-fields", default="title,text", show_default=True,
              help="Comma-separated catalog fields composing each document.")
@click.option("--param", "params", multiple=True, metavar="[STRATEGY.]KEY=VALUE",
              help="Strategy parameter (JSON value), repeatable, e.g. --param k1=1.2 or --param dense.index=hnsw.")
@click.option("--fusion", type=click.Choice(["rrf", "weighted"]), default="rrf", show_default=True,
              help="How several strategies' lists are fused.")
@click.option("--weights", default="", help="Fusion weights, e.g. bm25=0.7,dense=0.3 (default 1 each).")
@click.option("--rrf-k", default=60.0, show_default=True, help="RRF constant.")
def retrieve(strategy, catalog_path, queries_path, k, out_path, text_fields, params, fusion, weights, rrf_k):
    """Run one strategy (or fuse several) over a query file and write a TREC run."""
    import numpy as np

    from ltrr import registry
    from ltrr.catalog import Catalog
    from ltrr.io import read_queries, write_run
    from ltrr.params import validate_params
    from ltrr.ranking.fusion import FusionSpec, fuse
    from ltrr.types import Candidates, QueryBatch

    names = [n.strip() for n in strategy.split(",") if n.strip()]
    classes = {n: registry.get("strategy", n) for n in names}  # unknown names fail before any work
    per: dict[str, dict] = {n: {} for n in names}
    for p in params:
        key, sep, raw = p.partition("=")
        if not sep:
            raise click.BadParameter(f"expected KEY=VALUE, got {p!r}", param_hint="--param")
        target, dot, key = key.rpartition(".") if "." in key else ("", "", key)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        for n in ([target] if dot else names):
            if n not in per:
                raise click.BadParameter(f"--param names strategy {n!r}, not one of {names}", param_hint="--param")
            per[n][key] = value
    catalog = Catalog.from_jsonl(catalog_path)
    queries = read_queries(queries_path)
    batch = QueryBatch(tuple(q for _, q in queries))
    fields = [f.strip() for f in text_fields.split(",") if f.strip()]
    results = []
    for n in names:
        klass = classes[n]
        values = dict(per[n])
        if "text_fields" in klass.Params.model_fields and "text_fields" not in values:
            values["text_fields"] = fields
        strat = klass(validate_params(klass.Params, values, f"--param for {n}")).fit(catalog)
        results.append(strat.retrieve(batch, k))
    spec = None
    if len(names) > 1:
        w = {}
        for part in filter(None, (x.strip() for x in weights.split(","))):
            key, _, val = part.partition("=")
            w[key] = float(val)
        spec = FusionSpec(fusion, rrf_k, w)
    run = {}
    for i, (qid, _q) in enumerate(queries):
        if spec is None:
            ids, scores = results[0].row(i)
        else:
            cands = Candidates.union(names, [r.row(i) for r in results])
            fused = fuse(cands, spec)
            order = np.lexsort((np.arange(len(cands)), -fused))[:k]
            ids, scores = cands.items[order], fused[order]
        run[qid] = [(catalog.ids[j], float(s)) for j, s in zip(ids, scores, strict=True)]
    tag = f"ltrr-{'+'.join(names)}" + (f"-{fusion}" if spec else "")
    write_run(out_path, run, tag=tag)
    click.echo(f"wrote {out_path}: {len(queries)} queries, top {k}")


@main.command()
@click.option("--run", "run_path", required=True, type=click.Path(dir_okay=False))
@click.option("--qrels", "qrels_path", required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
def evaluate(run_path, qrels_path, as_json):
    """nDCG@10, Recall@100, MRR@10 and MAP of a TREC run (queries with >= 1 relevant document)."""
    from ltrr.io import read_qrels, read_run
    from ltrr.offline.metrics import evaluate as eval_run

    res = eval_run(read_run(run_path), read_qrels(qrels_path), ("nDCG@10", "R@100", "RR@10", "AP"))
    names = {"nDCG@10": "nDCG@10", "R@100": "Recall@100", "RR@10": "MRR@10", "AP": "MAP"}
    out = {names.get(k, k): round(v, 4) for k, v in res.items()}
    if as_json:
        click.echo(json.dumps(out))
    else:
        for key, v in out.items():
            click.echo(f"{key:<11} {v:.4f}")


@main.group()
def config():
    """Show and check engine configs."""


@config.command("show")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Validate this TOML file and print it with every default filled in.")
def config_show(config_path):
    """Print the full config (embedded defaults unless --config) as JSON."""
    from ltrr.config import to_json

    click.echo(to_json(_load_cfg(config_path)))


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Engine directory to write.")
def build(config_path, out):
    """Fit every component of a config and save the engine directory (for `ltrr serve`)."""
    from ltrr.engine import Engine

    engine = Engine.from_config(_load_cfg(config_path))
    engine.save(out)
    click.echo(f"saved engine to {out}")


@main.command()
@click.argument("query")
@click.option("--engine", "engine_dir", type=click.Path(file_okay=False), default=None,
              help="Saved engine directory (default: build from --config).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None)
@click.option("--k", default=10, show_default=True)
def search(query, engine_dir, config_path, k):
    """Answer one query and print the decision as JSON (results with provenance, plan)."""
    from ltrr.engine import Engine, decision_to_json

    engine = Engine.load(engine_dir) if engine_dir else Engine.from_config(_load_cfg(config_path))
    d = engine.search(query, k=k)
    click.echo(json.dumps(decision_to_json(d, engine.catalog), indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()
