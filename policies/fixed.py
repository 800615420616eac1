"""A constant plan: the baselines every learned policy must beat."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
from pydantic import Field

from ltrr.contracts.policy import PlanMenu, Policy
from ltrr.errors import ConfigError
from ltrr.params import Params
from ltrr.types import Plan


class FixedPolicyParams(Params):
    #: depth per strategy; strategies not named are off. Empty means "every strategy at its
    #: largest depth".
    depths: dict[str, int] = Field(default_factory=dict)


#: the parameter model of a fixed policy or of a subclass (the fusion baselines)
FP = TypeVar("FP", bound=FixedPolicyParams)


class FixedPolicy(Policy[FP]):
    """Always the same plan, with propensity 1. ``depths`` may lie outside the joint menu."""

    type_name = "fixed"
    Params = FixedPolicyParams
    adaptive = False

    def __init__(self, menu: PlanMenu, n_features: int, params=None, feature_names=None):
        super().__init__(menu, n_features, params, feature_names)
        unknown = sorted(set(self.params.depths) - set(menu.strategies))
        if unknown:
            raise ConfigError(
                f"fixed policy names unknown strategy {unknown[0]!r}; strategies: {', '.join(menu.strategies)}"
            )
        if self.params.depths:
            depths = tuple(int(self.params.depths.get(s, 0)) for s in menu.strategies)
        else:
            depths = tuple(max(o) for o in menu.options)
        if sum(depths) == 0:
            raise ConfigError("fixed policy turns every strategy off")
        self.depths = depths
        self.action = menu.action_of(depths)

    def _probabilities(self, x: np.ndarray) -> np.ndarray:
        p = np.zeros(self.menu.n_actions)
        if self.action >= 0:
            p[self.action] = 1.0
        return p

    def _select(self, x: np.ndarray, rng: np.random.Generator) -> Plan:
        return Plan(self.menu.strategies, self.depths, 1.0, action=self.action, policy=self.type_name)

    def _update(self, x, plan, reward, strategy_rewards) -> None:
        """A fixed plan learns nothing."""

    def _warm_start(self, X, plan_rewards, depth_rewards, observed) -> None:
        """A fixed plan learns nothing."""
