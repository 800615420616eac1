"""The ``ltrr`` command line: thin subcommands over the Engine, the simulators and the metrics.

Logging is configured here and nowhere else. Conventions every command follows:

* Every input is checked before work starts; a bad one prints one line (``error: ...`` naming
  the file, line, key or option and the offending value) and exits with status 2. Outputs are
  written to a temporary path and renamed at the end, so a failed command leaves nothing
  half-written.
* stdout carries the result only: human text, or JSON with ``--json`` (never both). Progress
  on steps longer than ~2 s goes to stderr (:mod:`ltrr.progress`); ``-q`` silences it.
"""

from __future__ import annotations

import json
import logging
import os
import sys

import click

from ltrr import __version__
from ltrr.errors import DataError, LtrrError

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


def fail(message: str, code: int = 2):
    """Print ``error: message`` on one line and exit."""
    click.echo(f"error: {' '.join(str(message).split())}", err=True)
    sys.exit(code)


class _Group(RegistryGroup):
    """The top-level group: errors ltrr raises on purpose, usage errors and unreadable files
    become one line and exit status 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LtrrError as exc:
            fail(str(exc))
        except OSError as exc:  # a path that cannot be read or written (permissions, disk full)
            if exc.filename is None:
                raise
            fail(f"{exc.filename}: {exc.strerror or exc}")

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            where = f"{exc.ctx.command_path}: " if exc.ctx is not None else ""
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            fail(f"{where}{exc.format_message()}{hint}", exc.exit_code)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code)
        except click.Abort:
            fail("aborted", 1)
        sys.exit(0)


@click.group(cls=_Group)
@click.version_option(__version__, "--version", prog_name="ltrr",
                      message="%(prog)s %(version)s (Python " + sys.version.split()[0] + ")")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr (errors still print).")
def main(verbose: int, quiet: bool) -> None:
    """ltrr: learning to rank and retrieve.

    Candidate generators (BM25, click memory, ...) are chosen and sized per query by a
    contextual bandit; their union is reranked by LambdaMART; click feedback updates the policy,
    the click memory and the ranker.
    """
    from ltrr.progress import set_quiet

    set_quiet(quiet)
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")


def load_cfg(config: str | None):
    """The TOML config at ``config`` (validated, paths checked), or the embedded defaults."""
    from ltrr.config import default_config, load_config

    return load_config(config) if config else default_config()


def echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False))


def split_names(value: str, option: str) -> list[str]:
    """Comma-separated names, none empty or repeated."""
    names = [n.strip() for n in value.split(",")]
    if not value.strip() or any(not n for n in names):
        raise click.BadParameter(f"expected comma-separated names, got {value!r}", param_hint=option)
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise click.BadParameter(f"{dup[0]!r} is named twice in {value!r}", param_hint=option)
    return names


def parse_weights(value: str, names: list[str]) -> dict[str, float]:
    """``bm25=0.7,dense=0.3`` -> a dict over ``names`` (each a number; unknown names refused)."""
    out: dict[str, float] = {}
    for part in filter(None, (x.strip() for x in value.split(","))):
        key, sep, raw = part.partition("=")
        try:
            if not sep:
                raise ValueError
            out[key.strip()] = float(raw)
        except ValueError:
            raise click.BadParameter(f"expected NAME=NUMBER, got {part!r}", param_hint="--weights") from None
        if key.strip() not in names:
            raise click.BadParameter(f"{key.strip()!r} is not one of the fused strategies {names}",
                                     param_hint="--weights")
    return out


TAG_HELP = "Run tag (the last column of the TREC run; no spaces)."


def check_tag(ctx, param, value: str) -> str:
    if value is not None and (not value or any(c.isspace() for c in value)):
        raise click.BadParameter(f"must be non-empty without spaces, got {value!r}")
    return value


@main.command()
@click.option("--strategy", required=True,
              help="Registry name of the strategy (e.g. bm25), or several comma-separated names to fuse.")
@click.option("--catalog", "catalog_path", required=True, type=click.Path(dir_okay=False))
@click.option("--queries", "queries_path", required=True, type=click.Path(dir_okay=False))
@click.option("--k", default=1000, show_default=True, type=click.IntRange(min=1), help="Results per query.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="TREC run file to write.")
@click.option("--text-fields", default="title,text", show_default=True,
              help="Comma-separated catalog fields composing each document.")
@click.option("--param", "params", multiple=True, metavar="[STRATEGY.]KEY=VALUE",
              help="Strategy parameter (JSON value), repeatable, e.g. --param k1=1.2 or --param dense.index=hnsw.")
@click.option("--fusion", type=click.Choice(["rrf", "weighted"]), default="rrf", show_default=True,
              help="How several strategies' lists are fused.")
@click.option("--weights", default="", help="Fusion weights, e.g. bm25=0.7,dense=0.3 (default 1 each).")
@click.option("--rrf-k", default=60.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="RRF constant.")
@click.option("--tag", default=None, callback=check_tag, help=TAG_HELP + "  [default: ltrr-<strategies>]")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead of a line of text.")
def retrieve(strategy, catalog_path, queries_path, k, out_path, text_fields, params, fusion, weights, rrf_k,
             tag, as_json):
    """Run one strategy (or fuse several) over a query file and write a TREC run."""
    import numpy as np

    from ltrr import progress, registry
    from ltrr.catalog import Catalog
    from ltrr.io import read_queries, write_run
    from ltrr.params import validate_params
    from ltrr.ranking.fusion import FusionSpec, fuse
    from ltrr.types import Candidates, QueryBatch

    names = split_names(strategy, "--strategy")
    classes = {n: registry.get("strategy", n) for n in names}  # unknown names fail before any work
    fields = split_names(text_fields, "--text-fields")
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
                raise click.BadParameter(f"names strategy {n!r}, not one of {names}", param_hint="--param")
            per[n][key] = value
    validated = {}
    for n in names:
        klass = classes[n]
        values = dict(per[n])
        if "text_fields" in klass.Params.model_fields and "text_fields" not in values:
            values["text_fields"] = fields
        validated[n] = validate_params(klass.Params, values, f"--param for {n}")
    spec = FusionSpec(fusion, rrf_k, parse_weights(weights, names)) if len(names) > 1 else None
    if weights and spec is None:
        raise click.BadParameter("fusion weights need several strategies", param_hint="--weights")
    queries = read_queries(queries_path)
    with progress.step(f"reading the catalog {catalog_path}"):
        catalog = Catalog.from_jsonl(catalog_path)
    for n in names:
        used = validated[n].model_dump().get("text_fields")
        if used:
            catalog.check_text_fields(list(used), f"--text-fields of {n}" if "text_fields" not in per[n]
                                      else f"--param {n}.text_fields")
    batch = QueryBatch(tuple(q for _, q in queries))
    results = []
    for n in names:
        with progress.step(f"fitting {n}", len(catalog)):
            strat = classes[n](validated[n], name=n).fit(catalog)
        with progress.step(f"retrieving with {n}", len(queries), "queries"):
            results.append(strat.retrieve(batch, k))
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
    tag = tag or f"ltrr-{'+'.join(names)}" + (f"-{fusion}" if spec else "")
    write_run(out_path, run, tag=tag)
    n_docs = sum(len(v) for v in run.values())
    if as_json:
        echo_json({"out": str(out_path), "queries": len(queries), "k": k, "lines": n_docs, "tag": tag})
    else:
        click.echo(f"wrote {out_path}: {len(queries)} queries, {n_docs} lines (top {k}), tag {tag}")


MEASURES_HELP = ("Measures in ir-measures syntax, space- or comma-separated, e.g. "
                 "'nDCG@10 R@100 AP RR@10 P@5 nDCG(rel=2)@10 Judged@10'.")


@main.command()
@click.option("--run", "run_path", required=True, type=click.Path(dir_okay=False))
@click.option("--qrels", "qrels_path", required=True, type=click.Path(dir_okay=False))
@click.option("--measures", "-m", "measures", default="nDCG@10 R@100 RR@10 AP", show_default=True,
              help=MEASURES_HELP)
@click.option("--per-query", is_flag=True, help="Also every query's value (trec_eval -q style).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def evaluate(run_path, qrels_path, measures, per_query, as_json):
    """Evaluate a TREC run against TREC qrels with ir-measures.

    Values are computed by ir-measures (trec_eval's definitions: nDCG's gain is the grade; see
    ir-measures' documentation for every measure and parameter). The mean runs over the qrels
    queries with at least one relevant (grade >= 1) document; such a query missing from the run
    counts 0 (trec_eval -c), and run queries without judgments are ignored.
    """
    from ltrr.offline.trec_eval import evaluate_run, parse_measures

    parsed = parse_measures(measures)
    from ltrr.io import read_qrels, read_run

    res = evaluate_run(read_run(run_path), read_qrels(qrels_path), parsed)
    if as_json:
        out = {"run": str(run_path), "qrels": str(qrels_path), "queries": res.n_queries,
               "mean": res.mean}
        if per_query:
            out["per_query"] = res.per_query
        echo_json(out)
        return
    width = max(len(m) for m in res.mean)
    if per_query:
        for m, values in res.per_query.items():
            for qid, v in values.items():
                click.echo(f"{m:<{width}}  {qid:<8}  {v:.4f}")
    for m, v in res.mean.items():
        click.echo(f"{m:<{width}}  {'all':<8}  {v:.4f}" if per_query else f"{m:<{width}}  {v:.4f}")
    if not per_query:
        click.echo(f"({res.n_queries} queries with a relevant document)")


@main.group(cls=RegistryGroup)
def config():
    """Show and check engine configs."""


@config.command("show")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Check this TOML file (as `ltrr config check` does, without reading the catalog) "
                   "and print it with every default filled in.")
def config_show(config_path):
    """Print the full config (embedded defaults unless --config) as JSON."""
    from ltrr.builder import check_config
    from ltrr.config import to_json

    cfg = load_cfg(config_path)
    check_config(cfg, where=config_path or "<default config>")
    click.echo(to_json(cfg))


@config.command("check")
@click.argument("config_path", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead of a line of text.")
def config_check(config_path, as_json):
    """Check CONFIG_PATH as `ltrr build` would, without building.

    TOML syntax, every key and value, the paths (relative ones against the config file's
    directory), every component's registry name and parameters, the plan menu, the context
    features, and the catalog: every line read and checked, every text field present.
    """
    from ltrr import progress
    from ltrr.builder import check_config, components
    from ltrr.catalog import Catalog

    cfg = load_cfg(config_path)
    check_config(cfg, where=config_path)
    with progress.step(f"reading the catalog {cfg.catalog.path}"):
        catalog = Catalog.from_jsonl(cfg.catalog.path, limit=cfg.catalog.limit)
    check_config(cfg, catalog, where=config_path)
    names = [f"{kind} {name}" for kind, name in components(cfg)]
    if as_json:
        echo_json({"config": str(config_path), "ok": True, "catalog": cfg.catalog.path,
                   "items": len(catalog), "components": names})
    else:
        click.echo(f"{config_path}: ok ({len(catalog)} catalog items; {', '.join(names)})")


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Engine config (TOML); default: the embedded demo config (`ltrr config show`).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Engine directory to write.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead of a line of text.")
def build(config_path, out, as_json):
    """Fit every component of a config and save the engine directory (for `ltrr serve`).

    The directory is written aside and renamed into place when complete."""
    from ltrr import progress
    from ltrr.builder import check_config
    from ltrr.catalog import Catalog
    from ltrr.engine import Engine

    cfg = load_cfg(config_path)
    where = config_path or "<default config>"
    check_config(cfg, where=where)
    with progress.step(f"reading the catalog {cfg.catalog.path}"):
        catalog = Catalog.from_jsonl(cfg.catalog.path, limit=cfg.catalog.limit)
    check_config(cfg, catalog, where=where)
    engine = Engine.from_config(cfg, catalog=catalog)
    try:
        with progress.step(f"saving the engine to {out}"):
            engine.save(out)
    finally:
        engine.close()
    if as_json:
        echo_json({"engine": str(out), "items": len(catalog),
                   "strategies": [s.name for s in cfg.strategies]})
    else:
        click.echo(f"saved engine to {out} ({len(catalog)} items; "
                   f"strategies {', '.join(s.name for s in cfg.strategies)})")


def open_engine(engine_dir: str | None, config_path: str | None):
    """A saved engine (``--engine``) or one built from ``--config`` (default config)."""
    from ltrr import progress
    from ltrr.engine import Engine

    if engine_dir:
        with progress.step(f"loading the engine {engine_dir}"):
            return Engine.load(engine_dir)
    return Engine.from_config(load_cfg(config_path))


@main.command()
@click.argument("query")
@click.option("--engine", "engine_dir", type=click.Path(file_okay=False), default=None,
              help="Saved engine directory (default: build from --config).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None)
@click.option("--k", default=10, show_default=True, type=click.IntRange(min=1))
def search(query, engine_dir, config_path, k):
    """Answer one query and print the decision as JSON (results with provenance, plan)."""
    from ltrr.engine import decision_to_json

    if engine_dir and config_path:
        raise click.UsageError("give --engine or --config, not both")
    engine = open_engine(engine_dir, config_path)
    try:
        d = engine.search(query, k=k)
        echo_json(decision_to_json(d, engine.catalog))
    finally:
        engine.close()


@main.command("run")
@click.option("--engine", "engine_dir", required=True, type=click.Path(file_okay=False),
              help="Saved engine directory (`ltrr build`, or a replay's OUT/engine).")
@click.option("--queries", "queries_path", required=True, type=click.Path(dir_okay=False),
              help="Queries JSONL ({qid, query}).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="TREC run file to write.")
@click.option("--tag", default="ltrr", show_default=True, callback=check_tag, help=TAG_HELP)
@click.option("--k", default=100, show_default=True, type=click.IntRange(min=1),
              help="Results per query (at most the candidates the engine's plan draws).")
@click.option("--ts", default=0.0, show_default=True, type=float,
              help="Request time (Unix seconds) every search is answered at (time context features).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead of a line of text.")
def run_cmd(engine_dir, queries_path, out_path, tag, k, ts, as_json):
    """Answer every query of a file with a saved engine and write its pages as a TREC run.

    Each query is one search, as the engine serves it: the policy's plan (seeded by the config,
    so a run repeats exactly), the union of the strategies' candidates, the ranker's order (RRF
    while the incumbent still serves it). Scores are written so that any evaluator reproduces
    the page order. Nothing is learned and the engine directory is not modified.
    """
    from ltrr import progress
    from ltrr.io import read_queries, write_run

    queries = read_queries(queries_path)
    engine = open_engine(engine_dir, None)
    run = {}
    try:
        for qid, text in progress.bar(queries, len(queries), "run", "q"):
            d = engine.search(text, k=k, ts=ts)
            run[qid] = list(zip(d.page_ids, d.page_scores.tolist(), strict=True))
    finally:
        engine.close()
    write_run(out_path, run, tag=tag)
    n_docs = sum(len(v) for v in run.values())
    if as_json:
        echo_json({"out": str(out_path), "queries": len(queries), "lines": n_docs, "tag": tag})
    else:
        click.echo(f"wrote {out_path}: {len(queries)} queries, {n_docs} lines, tag {tag}")


@main.command("data")
@click.option("--dir", "only_dir", is_flag=True, help="Print only the directory (for scripts).")
def data_cmd(only_dir):
    """Where the shipped data and configs are (the movie catalog, Cranfield, configs/*.toml).

    Usable from any directory: e.g. ``ltrr simulate --catalog "$(ltrr data --dir)/data/cranfield/corpus.jsonl" ...``
    """
    from ltrr.config import CONFIGS_DIR, DATA_DIR, SHARE_DIR

    if not DATA_DIR.is_dir():
        raise DataError(f"{DATA_DIR}: the shipped data is not installed (set $LTRR_HOME to a checkout of ltrr)")
    if only_dir:
        click.echo(str(SHARE_DIR))
        return
    for path in sorted([*DATA_DIR.glob("*/*.jsonl"), *DATA_DIR.glob("*/qrels*.txt"), *CONFIGS_DIR.glob("*.toml")]):
        click.echo(str(path))


if __name__ == "__main__":  # pragma: no cover
    main()
