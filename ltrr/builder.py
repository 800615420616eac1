"""Building an engine's components from a config: every component found by name through the
registry, its parameters validated against its own ``Params`` model, strategies fitted on the
catalog."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, TypeVar

from ltrr import progress, registry
from ltrr.catalog import Catalog
from ltrr.config import EngineConfig
from ltrr.context import ContextFeaturizer
from ltrr.contracts.policy import PlanMenu, Policy
from ltrr.contracts.ranker import Ranker
from ltrr.contracts.strategy import CandidateGenerator
from ltrr.errors import UnknownComponentError
from ltrr.features import FeatureBuilder, FeatureSchema
from ltrr.params import Params, validate_params
from ltrr.store.log_contract import open_event_log
from ltrr.threads import native_threads, set_native_threads

if TYPE_CHECKING:
    from ltrr.engine import Engine

E = TypeVar("E", bound="Engine")


def strategy_class(kind: str) -> type[CandidateGenerator]:
    """The registered strategy class of ``kind``, checked against the contract."""
    klass = registry.get("strategy", kind)
    if not (isinstance(klass, type) and issubclass(klass, CandidateGenerator)):
        raise TypeError(f"strategy {kind!r} is registered as {klass!r}, which is not a CandidateGenerator")
    return klass


def policy_class(kind: str) -> type[Policy]:
    klass = registry.get("policy", kind)
    if not (isinstance(klass, type) and issubclass(klass, Policy)):
        raise TypeError(f"policy {kind!r} is registered as {klass!r}, which is not a Policy")
    return klass


def ranker_class(kind: str) -> type[Ranker]:
    klass = registry.get("ranker", kind)
    if not (isinstance(klass, type) and issubclass(klass, Ranker)):
        raise TypeError(f"ranker {kind!r} is registered as {klass!r}, which is not a Ranker")
    return klass


def strategy_params(config: EngineConfig, i: int) -> tuple[type[CandidateGenerator], Params]:
    """The class and validated parameters of strategy ``config.strategies[i]``; a strategy with a
    ``text_fields`` parameter that the config leaves out indexes the catalog's ``text_fields``."""
    sc = config.strategies[i]
    klass = strategy_class(sc.kind)
    params = dict(sc.params)
    if "text_fields" in klass.Params.model_fields and "text_fields" not in params:
        params["text_fields"] = list(config.catalog.text_fields)
    return klass, validate_params(klass.Params, params, f"strategies[{i}] ({sc.name}).params")


def build_strategy(config: EngineConfig, i: int, catalog: Catalog) -> CandidateGenerator:
    """Strategy ``config.strategies[i]`` fitted on ``catalog``."""
    klass, p = strategy_params(config, i)
    name = config.strategies[i].name
    with progress.step(f"fitting {name}", len(catalog)):
        return klass(p, name=name).fit(catalog)


def check_config(config: EngineConfig, catalog: Catalog | None = None, where: str = "<config>") -> None:
    """Everything :func:`build_engine` checks before its work, without building: every component
    found in the registry and of its contract, every parameter valid for its component, the plan
    menu and context features well formed, and (given the ``catalog``) every text field named a
    field of some item. Raises the first error (ConfigError, UnknownComponentError, DataError)."""
    from ltrr.errors import ConfigError

    def at(key: str, exc: Exception) -> ConfigError:
        return ConfigError(f"{where}: {key}: {exc}")

    if catalog is not None:
        catalog.check_text_fields(config.catalog.text_fields, f"{where}: catalog.text_fields")
    for i, sc in enumerate(config.strategies):
        try:
            _klass, p = strategy_params(config, i)
        except (UnknownComponentError, TypeError) as exc:
            raise at(f"strategies[{i}].type", exc) from None
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        fields = p.model_dump().get("text_fields")
        if catalog is not None and fields:
            catalog.check_text_fields(list(fields), f"{where}: strategies[{i}] ({sc.name}).params.text_fields")
    try:
        klass = policy_class(config.policy.type)
    except (UnknownComponentError, TypeError) as exc:
        raise at("policy.type", exc) from None
    try:
        validate_params(klass.Params, config.policy.params, "policy.params")
        plan_menu(config)
        context_featurizer(config)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    try:
        rklass = ranker_class(config.ranker.type)
    except (UnknownComponentError, TypeError) as exc:
        raise at("ranker.type", exc) from None
    try:
        rklass(FeatureSchema(()), dict(config.ranker.params))  # validates its parameters
    except ConfigError as exc:
        raise ConfigError(f"{where}: ranker.params: {exc}") from None


def components(config: EngineConfig) -> list[tuple[str, str]]:
    """Every ``(registry kind, name)`` a config builds (strategies, policy, ranker)."""
    return ([("strategy", sc.kind) for sc in config.strategies]
            + [("policy", config.policy.type), ("ranker", config.ranker.type)])


def context_featurizer(config: EngineConfig) -> ContextFeaturizer:
    return ContextFeaturizer(config.context_features, [s.name for s in config.strategies])


def plan_menu(config: EngineConfig) -> PlanMenu:
    """The joint plans the config allows (every strategy's depth menu under the budget)."""
    return PlanMenu.build({s.name: s.depths for s in config.strategies}, config.policy.budget,
                          config.policy.plans)


def build_policy(config: EngineConfig) -> Policy:
    """A fresh policy of ``config.policy`` over the config's plan menu and context features."""
    ctx = context_featurizer(config)
    klass = policy_class(config.policy.type)
    params = validate_params(klass.Params, config.policy.params, f"policy ({config.policy.type}).params")
    return klass(plan_menu(config), len(ctx.names), params, ctx.names)


def build_ranker(config: EngineConfig, schema: FeatureSchema) -> Ranker:
    return ranker_class(config.ranker.type)(schema, dict(config.ranker.params))


def build_engine(cls: type[E], config: EngineConfig, *, catalog: Catalog | None = None,
                 prebuilt: Mapping[str, CandidateGenerator] | None = None) -> E:
    """Build and fit every component named in ``config``.

    ``prebuilt`` supplies already-fitted strategies by instance name (e.g. one BM25 index shared
    by several simulated engines); a strategy that learns from feedback must not be shared.
    """
    if catalog is None:
        with progress.step(f"reading the catalog {config.catalog.path}"):
            catalog = Catalog.from_jsonl(config.catalog.path, limit=config.catalog.limit)
    prebuilt = dict(prebuilt or {})
    strategies: dict[str, CandidateGenerator] = {}
    with native_threads(config.threads.batch):  # fitting may use every core ...
        for i, sc in enumerate(config.strategies):
            strategies[sc.name] = prebuilt[sc.name] if sc.name in prebuilt else build_strategy(config, i, catalog)
        features = FeatureBuilder(catalog, strategies, config.catalog.text_fields,
                               match_when_off=config.ranker.match_when_off)
    set_native_threads(config.threads.search)  # ... searches run on the configured pool size
    events = open_event_log(config.store)
    return cls(config, catalog, strategies, build_policy(config), build_ranker(config, features.schema),
               features, context_featurizer(config), events)
