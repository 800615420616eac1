"""Saving and loading an engine, and snapshots of what online learning changes.

An engine directory holds ``manifest.json`` (format version, full config, feature schema, context
feature names, strategy success rates, the incumbent's and latency tracker's state, and for every
file its size, SHA-256 and a quick fingerprint), the catalog stored once in columnar form
(``catalog/``, memory-mapped on load, :meth:`ltrr.catalog.Catalog.save`), and one sub-directory
per component in its own open formats. Loading checks every file's size and quick fingerprint
(kilobytes read, so a 1M-item engine loads in seconds; truncated, replaced or partly damaged
files are caught); ``verify="full"`` recomputes every SHA-256. A *state snapshot* (:func:`save_state`) is
much lighter: the policy, the ranker, every strategy that learns from feedback
(:class:`~ltrr.contracts.strategy.LearnsFromFeedback`, found by type: click memory, a retrained
XR-Linear model and its click buffer), the learner's counters and caller metadata (e.g. the
journal sequence it includes). Both are written atomically (temporary directory, fsync, rename).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ltrr import __version__
from ltrr.builder import components, context_featurizer, policy_class, ranker_class, strategy_class
from ltrr.catalog import Catalog
from ltrr.config import parse_config
from ltrr.context import ContextFeaturizer
from ltrr.contracts.strategy import LearnsFromFeedback
from ltrr.errors import PersistenceError
from ltrr.features import FeatureBuilder
from ltrr.registry import check_plugin_records, plugin_records
from ltrr.store.log_contract import open_event_log
from ltrr.store.persist import (
    Verify,
    atomic_directory,
    check_files,
    file_records,
    read_manifest,
    write_manifest,
)
from ltrr.success import StrategySuccess
from ltrr.threads import set_native_threads

if TYPE_CHECKING:
    from ltrr.engine import Engine

E = TypeVar("E", bound="Engine")

#: 2: the catalog stored in columnar form (``catalog/``) and size + fingerprint + SHA-256 per file
ENGINE_FORMAT_VERSION = 2
#: engine directories this version reads (1: the catalog as a JSONL copy, one SHA-256 per file)
ENGINE_FORMATS = (1, ENGINE_FORMAT_VERSION)
STATE_FORMAT_VERSION = 1


def save_engine(engine: Engine, directory: str | os.PathLike) -> None:
    """Save ``engine`` as a directory of open formats with a JSON manifest (atomic)."""
    with engine.lock:
        strategies, policy, ranker = dict(engine.strategies), engine.policy, engine.ranker
        with atomic_directory(directory) as tmp:
            engine.catalog.save(tmp / "catalog")
            for name, strat in strategies.items():
                strat.save(tmp / "strategies" / name)
            policy.save(tmp / "policy")
            ranker.save(tmp / "ranker")
            config = engine.config.model_dump(mode="json")
            config["catalog"]["path"] = "catalog"
            config["store"]["events_path"] = ""
            config["store"]["dsn"] = ""  # a connection string may hold a password
            write_manifest(tmp, "engine", ENGINE_FORMAT_VERSION, {}, config=config,
                           ltrr_version=__version__, plugins=plugin_records(components(engine.config)),
                           feature_schema=engine.features.schema.to_dict(),
                           context_features=list(engine.context.names),
                           strategy_success=engine.success.to_dict(),
                           incumbent=engine.incumbent.to_dict(), latency=engine.latency.to_dict(),
                           files=file_records(tmp))


def load_engine(cls: type[E], directory: str | os.PathLike, *, events_path: str | None = None,
                verify: Verify = "quick", store: dict[str, Any] | None = None) -> E:
    """Load an engine directory; every file is checked against its manifest record (``verify``:
    ``"quick"`` sizes and fingerprints, ``"full"`` every SHA-256 too, ``"none"``). ``store``
    overrides keys of the saved ``[store]`` section (e.g. the backend and DSN of a replica)."""
    directory = Path(directory)
    manifest = read_engine_manifest(directory)
    check_plugin_records(manifest.get("plugins", []), f"{directory}/manifest.json")
    check_files(directory, manifest.get("files", manifest.get("checksums", {})), verify)
    config = parse_config(manifest["config"], f"{directory}/manifest.json", directory)
    overrides = {**(store or {}), **({"events_path": events_path} if events_path is not None else {})}
    if overrides:
        config = config.model_copy(update={"store": config.store.model_validate(
            {**config.store.model_dump(), **overrides})})
    if Path(config.catalog.path).is_dir():
        catalog = Catalog.load(config.catalog.path, verify="none")  # its files were just checked
    else:  # format 1 engines hold a copy of the JSONL
        catalog = Catalog.from_jsonl(config.catalog.path, limit=config.catalog.limit)
    strategies = {sc.name: strategy_class(sc.kind).load(directory / "strategies" / sc.name)
                  for sc in config.strategies}
    policy = policy_class(config.policy.type).load(directory / "policy")
    features = FeatureBuilder(catalog, strategies, config.catalog.text_fields,
                               match_when_off=config.ranker.match_when_off)
    ranker = ranker_class(config.ranker.type).load(directory / "ranker", expected_schema=features.schema)
    events = open_event_log(config.store)
    names = manifest.get("context_features")
    context = ContextFeaturizer(names) if names is not None else context_featurizer(config)
    engine = cls(config, catalog, strategies, policy, ranker, features, context, events)
    set_native_threads(config.threads.search)  # searches run on the configured pool size
    _restore_loop_records(engine, manifest)
    return engine


def _restore_loop_records(engine: Engine, manifest: dict[str, Any]) -> None:
    """What the loop accumulates beside the models (success rates, the incumbent's evidence and
    switches, the latency histograms), from an engine or state manifest."""
    if "strategy_success" in manifest:
        engine.success = StrategySuccess.from_dict(manifest["strategy_success"])
    if "incumbent" in manifest:
        engine.incumbent.restore(manifest["incumbent"])
    if "latency" in manifest:
        engine.latency.restore(manifest["latency"])


def read_engine_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a saved engine this version can load (a clear error otherwise)."""
    return read_manifest(directory, "engine", ENGINE_FORMATS)


def save_state(engine: Engine, directory: str | os.PathLike, **meta: Any) -> None:
    """Snapshot what online learning changes (policy, ranker, every strategy that learns from
    feedback, success rates, the learner's counters) atomically, with ``meta``.

    A consistent copy is taken under the engine lock; the slow file I/O happens outside it.
    Learning strategies are written from the instances current at that moment (a retrained
    model is swapped in whole, so the instance saved is never half-trained).
    """
    with atomic_directory(directory) as tmp:
        with engine.lock:
            try:
                policy = copy.deepcopy(engine.policy)
            except Exception:  # a policy holding native handles (VW): save it under the lock
                policy = None
                engine.policy.save(tmp / "policy")
            learned = {n: s for n, s in engine.strategies.items() if isinstance(s, LearnsFromFeedback)}
            ranker = engine.ranker
            learner = engine.learner.state()
            success = engine.success.to_dict()
            incumbent = engine.incumbent.to_dict()
            latency = engine.latency.to_dict()
        if policy is not None:
            policy.save(tmp / "policy")
        for name, strat in learned.items():  # learning strategies lock themselves while they copy out
            strat.save(tmp / "strategies" / name)
        ranker.save(tmp / "ranker")
        write_manifest(tmp, "engine-state", STATE_FORMAT_VERSION, {}, meta=dict(meta),
                       learned_strategies=sorted(learned), learner=learner, incumbent=incumbent, latency=latency,
                       feature_schema=engine.features.schema.to_dict(), strategy_success=success)


def load_state(engine: Engine, directory: str | os.PathLike) -> dict[str, Any]:
    """Restore a :func:`save_state` snapshot into ``engine`` (new instances swapped in whole);
    returns its ``meta``."""
    directory = Path(directory)
    manifest = read_manifest(directory, "engine-state", (STATE_FORMAT_VERSION,))
    config = engine.config
    kinds = {sc.name: sc.kind for sc in config.strategies}
    learned = {}
    for name in manifest.get("learned_strategies", manifest.get("stateful_strategies", [])):
        if name not in kinds:
            raise PersistenceError(f"{directory}: state of strategy {name!r}, which this engine does not have")
        learned[name] = strategy_class(kinds[name]).load(directory / "strategies" / name)
    policy = policy_class(config.policy.type).load(directory / "policy")
    ranker = ranker_class(config.ranker.type).load(directory / "ranker", expected_schema=engine.features.schema)
    learner = manifest.get("learner", {"events_since_train": manifest.get("feedback_since_train", 0)})
    with engine.lock:
        engine.strategies = {**engine.strategies, **learned}
        engine.policy = policy
        engine.ranker = ranker
        engine.learner.restore(learner)
        _restore_loop_records(engine, manifest)
    return dict(manifest.get("meta", {}))


def loop_state(engine: Engine) -> dict[str, Any]:
    """Loop state that :func:`save_engine` does not hold (the policy's random stream, seeded
    event ids, the learner's counters), as JSON, so a replay checkpoint resumes exactly."""
    return {"rng": engine.policy_rng.bit_generator.state, "event_ids": engine.event_ids.state(),
            "learner": engine.learner.state(), "n_searches": engine.n_searches}


def restore_loop_state(engine: Engine, state: dict[str, Any]) -> None:
    """Restore what :func:`loop_state` returned."""
    engine.policy_rng.bit_generator.state = state["rng"]
    engine.event_ids.restore(state.get("event_ids"))
    engine.learner.restore(state["learner"])
    engine.n_searches = int(state["n_searches"])
