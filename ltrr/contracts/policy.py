"""The policy contract and the plan menu.

A *plan* gives each strategy a depth from its menu (0 = off). A :class:`PlanMenu` enumerates the
joint plans allowed under a total candidate budget; joint policies choose among its rows.
``select`` validates the context and calls ``_probabilities``/``_select``; ``update`` validates
the reward and propensity, then calls ``_update``; ``warm_start`` validates full-information
rewards, then calls ``_warm_start``.

Optional capability: :class:`PageFusion` - a policy whose pages are ordered by rank fusion
instead of the learned ranker (the RRF / weighted-fusion baselines) declares it, and the engine
asks ``isinstance(policy, PageFusion)``.
"""

from __future__ import annotations

import itertools
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Self, TypeVar, cast

import numpy as np

from ltrr.errors import ConfigError, PersistenceError
from ltrr.params import Params as BaseParams
from ltrr.params import validate_params
from ltrr.ranking.fusion import FusionSpec
from ltrr.store.persist import atomic_directory, read_manifest, write_json, write_manifest
from ltrr.types import Plan


@dataclass(frozen=True)
class PlanMenu:
    """The joint plans a policy may choose: ``plans[a, s]`` is strategy ``s``'s depth in plan ``a``."""

    strategies: tuple[str, ...]
    options: tuple[tuple[int, ...], ...]
    plans: np.ndarray
    budget: int

    def __post_init__(self) -> None:
        plans = np.asarray(self.plans, dtype=np.int64)
        if plans.ndim != 2 or plans.shape[1] != len(self.strategies) or plans.shape[0] == 0:
            raise ConfigError(f"A plan menu over {len(self.strategies)} strategies needs plans of shape "
                              f"(n_plans >= 1, {len(self.strategies)}); got {plans.shape}")
        if len(self.options) != len(self.strategies):
            raise ConfigError(f"A plan menu needs one depth menu per strategy; got {len(self.options)} "
                              f"for {len(self.strategies)} strategies")
        totals = plans.sum(axis=1)
        over = np.flatnonzero(totals > self.budget)
        if over.size:
            a = int(over[0])
            raise ConfigError(f"plan {a} draws {int(totals[a])} candidates, over the budget of {self.budget}")
        off = np.flatnonzero(totals <= 0)
        if off.size:
            raise ConfigError(f"plan {int(off[0])} turns every strategy off")
        for s, name in enumerate(self.strategies):
            # depth 0 (off) is always allowed, even when a strategy's menu omits it
            bad = np.flatnonzero(~np.isin(plans[:, s], (0, *self.options[s])))
            if bad.size:
                a = int(bad[0])
                raise ConfigError(f"plan {a} gives strategy {name!r} depth {int(plans[a, s])}, "
                                  f"which is not in its menu {list(self.options[s])}")
        object.__setattr__(self, "plans", plans)

    @property
    def n_actions(self) -> int:
        return int(self.plans.shape[0])

    def plan(self, action: int, propensity: float, policy: str,
             strategy_propensities: Sequence[float] | None = None, estimated: bool = False) -> Plan:
        return Plan(self.strategies, tuple(int(d) for d in self.plans[action]), float(propensity),
                    tuple(strategy_propensities) if strategy_propensities is not None else (),
                    int(action), policy, estimated)

    def action_of(self, depths: Sequence[int] | np.ndarray) -> int:
        """Index of the plan with these depths, or -1 if it is not in the menu."""
        hit = np.flatnonzero((self.plans == np.asarray(depths)).all(axis=1))
        return int(hit[0]) if hit.size else -1

    def to_dict(self) -> dict[str, Any]:
        return {"strategies": list(self.strategies), "options": [list(o) for o in self.options],
                "plans": self.plans.tolist(), "budget": self.budget}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PlanMenu:
        return cls(tuple(d["strategies"]), tuple(tuple(o) for o in d["options"]),
                   np.asarray(d["plans"], dtype=np.int64).reshape(-1, len(d["strategies"])),
                   int(d["budget"]))

    @classmethod
    def build(cls, options: Mapping[str, Sequence[int]], budget: int,
              plans: Sequence[Mapping[str, int]] | None = None) -> PlanMenu:
        """Every combination of depths within ``budget`` (except all-off), or an explicit list."""
        names = tuple(options)
        if not names:
            raise ConfigError("A plan menu needs at least one strategy.")
        for name, opts in options.items():
            if not opts or any((not isinstance(d, int)) or d < 0 for d in opts):
                raise ConfigError(f"Depths of strategy {name!r} must be non-negative ints; got {list(opts)}")
        if plans is not None:
            rows = []
            for i, p in enumerate(plans):
                unknown = sorted(set(p) - set(names))
                if unknown:
                    raise ConfigError(f"plan {i} names unknown strategy {unknown[0]!r}; strategies: {', '.join(names)}")
                row = [int(p.get(n, 0)) for n in names]
                if sum(row) > budget:
                    raise ConfigError(f"plan {i} draws {sum(row)} candidates, over the budget of {budget}")
                if sum(row) == 0:
                    raise ConfigError(f"plan {i} turns every strategy off")
                rows.append(row)
            arr = np.asarray(rows, dtype=np.int64)
        else:
            combos = [c for c in itertools.product(*(sorted(set(options[n])) for n in names))
                      if 0 < sum(c) <= budget]
            if not combos:
                raise ConfigError(f"No plan fits the candidate budget of {budget}")
            arr = np.asarray(combos, dtype=np.int64)
        return cls(names, tuple(tuple(sorted(set(options[n]))) for n in names), arr, int(budget))


def sample_index(p: np.ndarray, rng: np.random.Generator) -> int:
    """Draw an index with probabilities ``p`` from one uniform (faster than ``rng.choice``).

    A zero-probability index is never drawn: its cdf step is empty.
    """
    cdf = np.cumsum(p)
    a = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
    a = min(a, p.size - 1)
    while p[a] <= 0.0:  # only reachable through rounding at the top end of the cdf
        a -= 1
    return a


P = TypeVar("P", bound=BaseParams)


class Policy(ABC, Generic[P]):
    """Base class of policies.

    ``select(x, rng)`` returns a :class:`~ltrr.types.Plan` carrying the probability of the chosen
    plan; ``probabilities(x)`` gives the whole distribution over ``menu.plans`` (for off-policy
    evaluation); ``update(x, plan, reward, strategy_rewards)`` learns from one event.
    """

    type_name: ClassVar[str] = "base"
    format_version: ClassVar[int] = 1
    Params: ClassVar[type[BaseParams]] = BaseParams
    params: P
    #: rewards outside this range are rejected by ``update``
    reward_range: ClassVar[tuple[float, float]] = (-1e6, 1e6)
    #: False for policies that always choose the same plan (the fixed baselines): the incumbent's
    #: conservative plan gate applies to adaptive policies only
    adaptive: ClassVar[bool] = True
    #: True when ``probabilities`` is estimated by sampling rather than computed exactly
    estimated_propensities: ClassVar[bool] = False

    def __init__(self, menu: PlanMenu, n_features: int,
                 params: P | dict[str, Any] | None = None,
                 feature_names: Sequence[str] | None = None):
        if params is None or isinstance(params, dict):
            params = cast(P, validate_params(self.Params, params, f"policy {self.type_name!r}"))
        self.params = params
        self.menu = menu
        self.n_features = int(n_features)
        self.feature_names = tuple(feature_names) if feature_names is not None else tuple(
            f"x{i}" for i in range(self.n_features))
        self.n_updates_ = 0

    # ---------------------------------------------------------------- public
    def select(self, x: np.ndarray, rng: np.random.Generator, allowed: np.ndarray | None = None) -> Plan:
        """Choose a plan for context ``x``; ``allowed`` (``bool[n_plans]``) restricts the choice
        (e.g. to plans within a latency budget): the policy's distribution is renormalized over
        the allowed plans (uniform over them when it gives them no mass), so the propensity
        stays exact given the mask."""
        x = self._check_x(x)
        if allowed is None:
            return self._select(x, rng)
        mask = np.asarray(allowed, dtype=bool)
        if mask.shape != (self.menu.n_actions,) or not mask.any():
            raise ValueError(f"{self.type_name}: allowed must be bool[{self.menu.n_actions}] with at least one "
                             f"True; got shape {mask.shape} with {int(mask.sum())} allowed")
        if mask.all():
            return self._select(x, rng)
        p = self._probabilities(x) * mask
        p = p / p.sum() if p.sum() > 0 else mask / mask.sum()
        a = sample_index(p, rng)
        return self.menu.plan(a, min(float(p[a]), 1.0), self.type_name,
                              strategy_propensities=self._marginals(p, a),
                              estimated=self.estimated_propensities)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Probability of each plan in ``menu.plans`` for context ``x`` (sums to 1)."""
        return self._probabilities(self._check_x(x))

    def update(self, x: np.ndarray, plan: Plan, reward: float,
               strategy_rewards: np.ndarray | None = None) -> None:
        x = self._check_x(x)
        lo, hi = self.reward_bounds
        if not np.isfinite(reward) or not (lo <= reward <= hi):
            raise ValueError(f"Reward {reward!r} is outside the configured range [{lo}, {hi}].")
        if not (plan.propensity > 0.0):
            raise ValueError(f"Cannot learn from an event whose propensity is {plan.propensity}; it must be > 0.")
        if tuple(plan.strategies) != self.menu.strategies:
            raise ValueError(f"{self.type_name}: plan is over strategies {list(plan.strategies)}, "
                             f"the policy's menu over {list(self.menu.strategies)}")
        if strategy_rewards is not None:
            strategy_rewards = self._check_strategy_rewards(strategy_rewards)
        self._update(x, plan, float(reward), strategy_rewards)
        self.n_updates_ += 1

    @property
    def reward_bounds(self) -> tuple[float, float]:
        """``params.reward_range`` when the policy declares one, else the class default."""
        lo, hi = getattr(self.params, "reward_range", self.reward_range)
        return float(lo), float(hi)

    def _check_strategy_rewards(self, strategy_rewards: np.ndarray) -> np.ndarray:
        r = np.array(strategy_rewards, dtype=np.float64)  # a copy: callers' arrays stay untouched
        n = len(self.menu.strategies)
        if r.shape != (n,):
            raise ValueError(f"{self.type_name}: strategy_rewards has shape {r.shape}, expected ({n},)")
        lo, hi = self.reward_bounds
        bad = ~np.isfinite(r) | (r < lo) | (r > hi)
        if bad.any():
            s = int(np.flatnonzero(bad)[0])
            raise ValueError(f"Reward {float(r[s])!r} of strategy {self.menu.strategies[s]!r} is outside the "
                             f"configured range [{lo}, {hi}].")
        return r

    # ---------------------------------------------------------------- persistence
    def save(self, directory: str | os.PathLike) -> None:
        with atomic_directory(directory) as tmp:
            arrays = self._state_arrays()
            if arrays:
                np.savez(tmp / "state.npz", allow_pickle=False, **arrays)
            write_json(tmp / "menu.json", self.menu.to_dict())
            write_manifest(tmp, self.type_name, self.format_version, self.params.model_dump(mode="json"),
                           n_features=self.n_features, feature_names=list(self.feature_names),
                           n_updates=self.n_updates_, **self._manifest_extra())
            self._save_extra(tmp)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Self:
        directory = Path(directory)
        manifest = read_manifest(directory, cls.type_name, (cls.format_version,))
        import json

        menu = PlanMenu.from_dict(json.loads((directory / "menu.json").read_text()))
        obj = cls(menu, manifest["n_features"],
                  cast(P, validate_params(cls.Params, manifest["params"], f"{directory}/manifest.json")),
                  manifest.get("feature_names"))
        obj.n_updates_ = int(manifest.get("n_updates", 0))
        state = directory / "state.npz"
        if state.exists():
            with np.load(state, allow_pickle=False) as z:
                obj._set_state_arrays({k: z[k] for k in z.files})
        elif obj._state_arrays():
            raise PersistenceError(f"{directory}: missing state.npz")
        obj._load_extra(directory, manifest)
        return obj

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {}

    def _set_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:  # noqa: B027 (optional hook)
        """Restore learned state from ``state.npz``."""

    def _manifest_extra(self) -> dict[str, Any]:
        return {}

    def _save_extra(self, directory: Path) -> None:  # noqa: B027 (optional hook)
        """Write files beyond state.npz (e.g. a VW model file)."""

    def _load_extra(self, directory: Path, manifest: dict[str, Any]) -> None:  # noqa: B027 (optional hook)
        """Read what ``_save_extra`` wrote."""

    # ---------------------------------------------------------------- hooks
    def _select(self, x: np.ndarray, rng: np.random.Generator) -> Plan:
        """Default: sample from ``_probabilities``; the propensity is exact."""
        p = self._probabilities(x)
        a = sample_index(p, rng)
        return self.menu.plan(a, min(float(p[a]), 1.0), self.type_name,
                              strategy_propensities=self._marginals(p, a))

    def _marginals(self, p: np.ndarray, action: int) -> list[float]:
        """P(strategy s gets the depth it got in ``action``), summed over plans."""
        chosen = self.menu.plans[action]
        same = self.menu.plans == chosen[None, :]
        # a sum of probabilities can round to just above 1; a propensity never exceeds 1
        return [min(float(p[same[:, s]].sum()), 1.0) for s in range(len(self.menu.strategies))]

    def warm_start(self, X: np.ndarray, plan_rewards: np.ndarray,
                   depth_rewards: np.ndarray | None = None, observed: np.ndarray | None = None) -> None:
        """Pre-train on logged contexts ``X`` (``float[n, n_features]``) and full-information rewards.

        Strategies are deterministic, so for a logged query with a click it is known, for *every*
        menu plan, whether its candidates would have contained the clicked item:
        ``plan_rewards[i, a]`` is that counterfactual reward (``float[n, n_plans]``). Learning it
        is cost-sensitive supervised learning: each policy learns the whole reward row at once
        (ridge policies update every plan's model; the factored policy every (strategy, depth)
        model, from ``depth_rewards`` ``float[n, n_strategies, n_options]`` when given, else from
        the menu's single-strategy plans; VW each plan's cost). These are full-information
        numbers, unlike the bandit feedback of :meth:`update`. ``observed`` (``bool[n, n_plans]``,
        default all True) says which plans' rewards a row identifies: a plan outside it learns
        nothing from that row (the partial feedback graph of ``policy.learning =
        "served_subplans"``). ``X`` and the rewards are not modified.
        """
        X = np.array(X, dtype=np.float64)
        R = np.array(plan_rewards, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"warm start contexts have shape {X.shape}, expected (n, {self.n_features})")
        if R.shape != (X.shape[0], self.menu.n_actions):
            raise ValueError(f"plan_rewards has shape {R.shape}, expected ({X.shape[0]}, {self.menu.n_actions})")
        bad = ~np.isfinite(X)
        if bad.any():
            i, j = (int(v) for v in np.argwhere(bad)[0])
            raise ValueError(f"Context feature {self.feature_names[j]!r} of warm-start row {i} is {X[i, j]} "
                             "(NaN or inf is not allowed).")
        lo, hi = self.reward_bounds
        depth = None if depth_rewards is None else np.array(depth_rewards, dtype=np.float64)
        for name, arr in (("plan_rewards", R), ("depth_rewards", depth)):
            if arr is None:
                continue
            out = ~np.isfinite(arr) | (arr < lo) | (arr > hi)
            if out.any():
                idx = tuple(int(v) for v in np.argwhere(out)[0])
                raise ValueError(f"{name}{list(idx)} = {float(arr[idx])!r} is outside the configured "
                                 f"range [{lo}, {hi}].")
        if observed is not None:
            observed = np.asarray(observed, dtype=bool)
            if observed.shape != R.shape:
                raise ValueError(f"observed has shape {observed.shape}, expected {R.shape}")
        if X.shape[0] == 0:
            return
        self._warm_start(X, R, depth, observed)
        self.n_updates_ += X.shape[0]

    @property
    def learns_plan_rewards(self) -> bool:
        """Whether :meth:`warm_start` can learn from the plan rewards alone on this menu (the
        learner's full-information updates pass no ``depth_rewards``); when not, the learner
        teaches the policy bandit feedback instead."""
        return type(self)._warm_start is not Policy._warm_start

    def _warm_start(self, X: np.ndarray, plan_rewards: np.ndarray,
                    depth_rewards: np.ndarray | None, observed: np.ndarray | None) -> None:
        """Learn from full-information rewards of every plan, or of the ``observed`` ones (see
        :meth:`warm_start`)."""
        raise ConfigError(f"policy {self.type_name!r} does not support warm start")

    @abstractmethod
    def _probabilities(self, x: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _update(self, x: np.ndarray, plan: Plan, reward: float,
                strategy_rewards: np.ndarray | None) -> None: ...

    def _check_x(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.n_features,):
            raise ValueError(f"{self.type_name}: context has shape {x.shape}, expected ({self.n_features},)")
        bad = ~np.isfinite(x)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"Context feature {self.feature_names[i]!r} is {x[i]} (NaN or inf is not allowed).")
        return x


class PageFusion(ABC):
    """A policy whose pages are ordered by rank fusion of the strategies' lists, not by the
    learned ranker (the engine applies :meth:`fusion_spec`; the policy stays free of ranking)."""

    @abstractmethod
    def fusion_spec(self) -> FusionSpec:
        """Which fusion orders this policy's pages."""
