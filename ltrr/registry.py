"""The component registry: names in config files -> classes.

Explicit: built-in components are listed here as ``"module:Class"`` strings and imported only
when asked for, so importing ltrr loads no strategy or policy. Plug-ins call :func:`register`.
An unknown name's error lists the registered names of that kind, computed from the table.
"""

from __future__ import annotations

import importlib
from typing import Any

from ltrr.errors import UnknownComponentError

KINDS = ("strategy", "policy", "ranker", "click_model", "command")

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


def register(kind: str, name: str, target: Any) -> None:
    """Register ``target`` (a class or a ``"module:Class"`` string) under ``kind``/``name``."""
    _check_kind(kind)
    _PLUGINS[kind][name] = target


def names(kind: str) -> list[str]:
    """Every registered name of ``kind``, sorted."""
    _check_kind(kind)
    return sorted({*_BUILTIN[kind], *_PLUGINS[kind]})


def get(kind: str, name: str) -> Any:
    """The class registered as ``kind``/``name``; UnknownComponentError lists the known names."""
    _check_kind(kind)
    target = _PLUGINS[kind].get(name, _BUILTIN[kind].get(name))
    if target is None:
        raise UnknownComponentError(
            f"Unknown {kind} {name!r}; registered {kind} names: {', '.join(names(kind))}"
        )
    if isinstance(target, str):
        module_name, _, attr = target.partition(":")
        module = importlib.import_module(module_name)
        target = getattr(module, attr)
    return target


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise UnknownComponentError(f"Unknown component kind {kind!r}; kinds: {', '.join(KINDS)}")
