"""The ``ltrr`` command line: thin subcommands over the Engine, the simulators and the metrics.

Logging is configured here and nowhere else. Errors ltrr raises on purpose print one line
(``error: ...``) and exit with status 2; no stack traces for bad input.
"""

from __future__ import annotations

import json
import logging
import os
import sys

import click

from ltrr.errors import LtrrError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class RegistryGroup(click.Group):
    """A command group that also offers the commands registered as ``command`` in
    :mod:`ltrr.registry` under its path (``"demo"`` for ``ltrr demo``, ``"log simulate"`` for
    ``ltrr log simulate``): they live next to the code they drive and load only when invoked."""

    def _prefix(self, ctx) -> str:
        parts = []
        while ctx is not None and ctx.parent is not None:
            parts.append(ctx.info_name)
            ctx = ctx.parent
        return " ".join(reversed(parts))

    def _registered(self, ctx) -> dict[str, str]:
        from ltrr import registry

        prefix = self._prefix(ctx)
        out = {}
        for name in registry.names("command"):
            head, _, tail = name.rpartition(" ")
            if head == prefix:
                out[tail] = name
        return out

    def list_commands(self, ctx):
        return sorted({*super().list_commands(ctx), *self._registered(ctx)})

    def get_command(self, ctx, name):
        cmd = super().get_command(ctx, name)
        full = self._registered(ctx).get(name)
        if cmd is None and full is not None:
            from ltrr import registry

            cmd = registry.get("command", full)
        return cmd


class _Group(RegistryGroup):
    """The top-level group: errors ltrr raises on purpose become one line and exit status 2."""

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
