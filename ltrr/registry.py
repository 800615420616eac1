"""The component registry: names in config files -> classes.

Explicit: built-in components are listed here as ``"module:Class"`` strings and imported only
when asked for, so importing ltrr loads no strategy or policy. Three more ways in, in this order:

* :func:`register` (a class or a ``"module:Class"`` string, from Python);
* Python entry points of installed distributions, in the groups of :data:`ENTRY_POINT_GROUPS`
  (``[project.entry-points."ltrr.strategies"]`` in a plug-in's ``pyproject.toml``): their names
  are read from the installed metadata the first time a lookup needs them, and a plug-in's
  module is imported only when its component is asked for;
* a ``"module:Class"`` string used directly as the name (``type = "mypkg.strategy:MyStrategy"``
  in a config).

An unknown name's error lists the registered names of that kind, computed from the tables.
:func:`provenance` says which installed distribution (name and version) a component comes from,
so a saved engine can name the plug-ins it needs (:func:`plugin_records`,
:func:`check_plugin_records`).
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata as md
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ltrr.errors import UnknownComponentError

KINDS = ("strategy", "policy", "ranker", "click_model", "command")

#: entry-point group of each kind
ENTRY_POINT_GROUPS = {
    "strategy": "ltrr.strategies",
    "policy": "ltrr.policies",
    "ranker": "ltrr.rankers",
    "click_model": "ltrr.click_models",
    "command": "ltrr.commands",
}

#: the distribution that ships the built-in components
HOME_DISTRIBUTION = "ltrr"

_BUILTIN: dict[str, dict[str, str]] = {
    "strategy": {
        "bm25": "strategies.bm25:BM25",
        "memory": "strategies.memory:ClickMemory",
        "dense": "strategies.dense:DenseRetriever",
        "xmr": "strategies.xmr:XRLinear",
        "structured": "strategies.structured:StructuredSearch",
        "explore": "strategies.explore:ExplorationGenerator",
    },
    "policy": {
        "fixed": "policies.fixed:FixedPolicy",
        "epsilon_greedy": "policies.epsilon_greedy:EpsilonGreedy",
        "rrf": "policies.fusion:ReciprocalRankFusion",
        "weighted_fusion": "policies.fusion:WeightedScoreFusion",
        "linucb": "policies.linucb:LinUCB",
        "thompson": "policies.thompson:LinearThompsonSampling",
        "softmax": "policies.softmax:SoftmaxPolicy",
        "factored": "policies.factored:FactoredPolicy",
        "vw": "policies.vw:VowpalWabbitPolicy",
    },
    "ranker": {
        "lambdamart": "ltrr.ranking.lambdamart:LambdaMARTRanker",
    },
    "click_model": {
        "pbm": "simulators.click_models:PositionBasedClickModel",
        "cascade": "simulators.click_models:CascadeClickModel",
        "dbn": "simulators.click_models:DynamicBayesianNetworkClickModel",
    },
    # ``ltrr`` subcommands that live next to the code they drive (click commands)
    "command": {
        "demo": "simulators.cli:demo",
        "simulate": "simulators.cli:simulate",
        "replay": "ltrr.offline.replay_cli:replay",
        "ope": "ltrr.offline.ope_cli:ope",
        "log": "ltrr.offline.logs_cli:log",
        "log simulate": "simulators.cli:simulate_log",
        "serve": "ltrr.serve.cli:serve",
        "train-ranker": "ltrr.ranking.cli:train_ranker",
        "explain": "ltrr.ranking.cli:explain",
        "index": "strategies.dense_cli:index",
        "complete": "strategies.xmr.cli:complete",
    },
}

_PLUGINS: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}


@dataclass(frozen=True)
class Provenance:
    """Where a registered component comes from: ``source`` is ``"builtin"``, ``"registered"``
    (:func:`register`), ``"entry_point"`` or ``"path"`` (a ``module:Class`` name);
    ``distribution`` and ``version`` name the installed distribution that ships its module
    (None when it is not part of one, e.g. a module on ``PYTHONPATH``)."""

    kind: str
    name: str
    target: str
    source: str
    distribution: str | None
    version: str | None


def register(kind: str, name: str, target: Any) -> None:
    """Register ``target`` (a class or a ``"module:Class"`` string) under ``kind``/``name``."""
    _check_kind(kind)
    _PLUGINS[kind][name] = target


def names(kind: str) -> list[str]:
    """Every registered name of ``kind`` (built in, registered and installed entry points), sorted."""
    _check_kind(kind)
    return sorted({*_BUILTIN[kind], *_PLUGINS[kind], *_entry_points(kind)})


def get(kind: str, name: str) -> Any:
    """The class registered as ``kind``/``name``, or named by a ``"module:Class"`` string;
    UnknownComponentError lists the known names."""
    _check_kind(kind)
    target = _lookup(kind, name)
    if target is None:
        raise UnknownComponentError(
            f"Unknown {kind} {name!r}; registered {kind} names: {', '.join(names(kind))}"
            + (f" (or a 'module:Class' path; {name!r} has no ':')" if "." in name and ":" not in name else "")
        )
    if isinstance(target, InstalledEntryPoint):
        return _load_entry_point(kind, name, target.ep)
    if isinstance(target, str):
        return _import_path(kind, name, target)
    return target


def is_path(name: str) -> bool:
    """True when ``name`` is a ``"module:Class"`` path rather than a registered name."""
    module, sep, attr = name.partition(":")
    return bool(sep and module and attr)


def provenance(kind: str, name: str) -> Provenance:
    """Where ``kind``/``name`` comes from (see :class:`Provenance`); imports nothing."""
    _check_kind(kind)
    target = _lookup(kind, name)
    if target is None:
        get(kind, name)  # raises the unknown-name error
    if isinstance(target, InstalledEntryPoint):
        dist = target.ep.dist
        return Provenance(kind, name, target.ep.value, "entry_point",
                          dist.metadata["Name"] if dist is not None else None,
                          dist.version if dist is not None else None)
    path = target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"
    if name in _PLUGINS[kind]:
        source = "registered"
    elif name in _BUILTIN[kind]:
        from ltrr import __version__

        return Provenance(kind, name, path, "builtin", HOME_DISTRIBUTION, __version__)
    else:
        source = "path"
    dist_name, version = _distribution_of(path.partition(":")[0])
    return Provenance(kind, name, path, source, dist_name, version)


def plugin_records(components: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Manifest records of the ``(kind, name)`` components that are not built into ltrr: what a
    saved engine needs installed besides ltrr (distribution and version when known)."""
    out = []
    for kind, name in components:
        p = provenance(kind, name)
        if p.source == "builtin":
            continue
        out.append({"kind": kind, "name": name, "target": p.target, "source": p.source,
                    "distribution": p.distribution, "version": p.version})
    return out


def check_plugin_records(records: list[dict[str, Any]], where: str) -> None:
    """Raise UnknownComponentError, with an install hint, for the first plug-in of a saved
    engine's manifest that cannot be loaded here."""
    for rec in records:
        kind, name = rec.get("kind", "strategy"), rec.get("name", "")
        try:
            get(kind, name)
        except (UnknownComponentError, ImportError, AttributeError) as exc:
            dist, version = rec.get("distribution"), rec.get("version")
            if dist:
                hint = f"install it: pip install '{dist}=={version}'" if version else f"install it: pip install {dist}"
                origin = f"the plug-in distribution {dist}" + (f" {version}" if version else "")
            else:
                hint = (f"make the module {rec.get('target', '').partition(':')[0]!r} importable "
                        "(it was not part of an installed distribution when the engine was saved)")
                origin = f"{rec.get('target')!r}"
            raise UnknownComponentError(
                f"{where}: {kind} {name!r} comes from {origin}, which cannot be loaded here "
                f"({_first_line(exc)}); {hint}") from None


# --------------------------------------------------------------------------- internals
def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise UnknownComponentError(f"Unknown component kind {kind!r}; kinds: {', '.join(KINDS)}")


def _lookup(kind: str, name: str) -> Any:
    if name in _PLUGINS[kind]:
        return _PLUGINS[kind][name]
    if name in _BUILTIN[kind]:
        return _BUILTIN[kind][name]
    ep = _entry_points(kind).get(name)
    if ep is not None:
        return ep
    if is_path(name):
        return name
    return None


@dataclass(frozen=True)
class InstalledEntryPoint:
    """An installed entry point, whichever ``importlib.metadata`` made it: once a library has
    imported the ``importlib_metadata`` backport (dask does), the standard library's
    ``entry_points()`` also returns the backport's ``EntryPoint`` objects, so the registry
    marks its own rather than testing their class."""

    ep: Any


_EP_CACHE: dict[str, dict[str, InstalledEntryPoint]] = {}
_EP_PATH: list[str] = []


def _entry_points(kind: str) -> dict[str, InstalledEntryPoint]:
    """The installed entry points of ``kind``'s group, by name (read once per ``sys.path``)."""
    if sys.path != _EP_PATH:  # a plug-in installed or put on the path since the last read
        _EP_CACHE.clear()
        _packages_distributions.cache_clear()
        _EP_PATH[:] = sys.path
    if kind not in _EP_CACHE:
        found: dict[str, InstalledEntryPoint] = {}
        for ep in md.entry_points(group=ENTRY_POINT_GROUPS[kind]):
            found.setdefault(ep.name, InstalledEntryPoint(ep))  # the first on sys.path wins, as imports do
        _EP_CACHE[kind] = found
    return _EP_CACHE[kind]


def refresh() -> None:
    """Forget the entry points read so far (after installing a plug-in in a running process)."""
    importlib.invalidate_caches()
    _EP_CACHE.clear()
    _packages_distributions.cache_clear()


def _load_entry_point(kind: str, name: str, ep: Any) -> Any:
    dist = f" of the distribution {ep.dist.metadata['Name']}" if ep.dist is not None else ""
    try:
        return ep.load()
    except (ImportError, AttributeError) as exc:
        raise UnknownComponentError(
            f"{kind} {name!r}: the entry point {ep.value!r}{dist} cannot be loaded ({_first_line(exc)})"
        ) from None


def _import_path(kind: str, name: str, path: str) -> Any:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if name == path:  # a user-supplied path, not one of ours
            raise UnknownComponentError(
                f"{kind} {name!r}: cannot import module {module_name!r} ({_first_line(exc)})") from None
        raise
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise UnknownComponentError(f"{kind} {name!r}: module {module_name!r} has no attribute {attr!r}")
    return obj


def _distribution_of(module_name: str) -> tuple[str | None, str | None]:
    """The installed distribution whose files hold top-level package ``module_name``."""
    top = module_name.partition(".")[0]
    dists = _packages_distributions().get(top, [])
    if not dists:
        return None, None
    name = dists[0]
    try:
        return name, md.version(name)
    except md.PackageNotFoundError:
        return name, None


@functools.lru_cache(maxsize=1)
def _packages_distributions() -> Mapping[str, list[str]]:
    return md.packages_distributions()  # reads every installed distribution's metadata: once


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
