"""``ltrr train-ranker`` and ``ltrr explain``: thin commands over the ranking package and Engine."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ltrr.errors import ConfigError


def _engine_manifest(engine_dir: str) -> dict:
    from ltrr.store.engine_dir import read_engine_manifest

    return read_engine_manifest(Path(engine_dir))


def _schema_from_log(events, pairs, log_path):
    """The feature schema the log's most recent clicked decision was served with."""
    from ltrr.features import FeatureSchema

    if not pairs:
        raise ConfigError(f"{log_path}: cannot train the ranker: the training log has no decision with a click")
    fp = pairs[-1][0].model_versions.get("features")
    stored = events.get_meta(f"feature_schema:{fp}") if fp else None
    if stored is None:
        raise ConfigError(f"{log_path}: the log does not record its features' names; "
                          "pass --engine DIR or --schema FILE")
    return FeatureSchema.from_dict(json.loads(stored))


@click.command("train-ranker")
@click.option("--log", "log_path", type=click.Path(dir_okay=False), default=None,
              help="Event log (SQLite) with decisions, their logged features and click feedback.")
@click.option("--engine", "engine_dir", type=click.Path(file_okay=False), default=None,
              help="Saved engine directory: gives the feature schema and the ranker params "
                   "(default: the schema the log records, default params).")
@click.option("--schema", "schema_path", type=click.Path(dir_okay=False), default=None,
              help="feature_schema.json (instead of --engine).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Ranker directory to write.")
@click.option("--debias", type=click.Choice(["none", "position", "ipw"]), default=None,
              help="Position-bias correction (default: the engine's ranker params, else 'position').")
@click.option("--n-estimators", type=click.IntRange(min=1), default=None,
              help="Boosting rounds (upper bound with early stopping).")
@click.option("--window", default=20000, show_default=True, type=click.IntRange(min=1),
              help="Most recent events with clicks to train on.")
@click.option("--seed", type=int, default=None, help="Seed of LightGBM and of the held-out query split.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="tqdm bar over boosting rounds.")
def train_ranker(log_path, engine_dir, schema_path, out, debias, n_estimators, window, seed, progress):
    """Train the LambdaMART ranker from the features logged with each decision and its clicks.

    Rows are exactly the features that were served (never recomputed); a held-out 20% of the
    queries drives early stopping. Writes the LightGBM text model, the feature schema and a
    training report (training_report.json) to --out.
    """
    from ltrr.features import FeatureSchema
    from ltrr.ranking.lambdamart import LambdaMARTRanker
    from ltrr.ranking.training import fit_from_clicks, training_set
    from ltrr.store.events import EventLog
    from ltrr.store.persist import write_json

    params: dict = {}
    schema = None
    if engine_dir:
        manifest = _engine_manifest(engine_dir)
        schema = FeatureSchema.from_dict(manifest["feature_schema"])
        params = dict(manifest["config"].get("ranker", {}).get("params", {}))
        log_path = log_path or manifest["config"].get("store", {}).get("events_path") or None
    if schema_path:
        schema = FeatureSchema.from_dict(json.loads(Path(schema_path).read_text()))
    if not log_path:
        raise ConfigError("train-ranker needs an event log: pass --log EVENTS.sqlite")
    if not Path(log_path).exists():
        raise ConfigError(f"{log_path}: no such event log")
    events = EventLog(str(log_path))
    try:
        pairs = list(events.training_events(window))
        if schema is None:
            schema = _schema_from_log(events, pairs, log_path)
    finally:
        events.close()
    for key, value in (("debias", debias), ("n_estimators", n_estimators), ("seed", seed)):
        if value is not None:
            params[key] = value
    ranker = LambdaMARTRanker(schema, params)
    data = training_set(pairs, schema)
    report = fit_from_clicks(ranker, data, progress=progress)
    ranker.save(out)
    write_json(Path(out) / "training_report.json", report)
    click.echo(json.dumps(report))


@click.command("explain")
@click.argument("query")
@click.option("--engine", "engine_dir", required=True, type=click.Path(file_okay=False),
              help="Saved engine directory.")
@click.option("--k", default=10, show_default=True, type=click.IntRange(min=1), help="Results to explain.")
@click.option("--top", default=None, type=click.IntRange(min=1), help="Keep the N largest contributions per result.")
def explain(query, engine_dir, k, top):
    """Search QUERY and explain each result: provenance and per-feature contributions."""
    from ltrr.engine import Engine

    engine = Engine.load(engine_dir)
    try:
        d = engine.search(query, k=k)
        out = {"query": query, "event_id": d.event_id, "model_versions": dict(d.model_versions),
               "results": engine.explain(d, top=top)}
    finally:
        engine.close()
    click.echo(json.dumps(out, indent=2))
