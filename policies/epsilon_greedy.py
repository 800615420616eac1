"""Epsilon-greedy over the joint plan menu, with a ridge reward model per plan."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from policies.base import PlanMenu, Policy
from policies.linear import LinearParams, RidgeArms, menu_action


class EpsilonGreedyParams(LinearParams):
    epsilon: float = Field(0.1, ge=0.0, le=1.0)


class EpsilonGreedy(Policy):
    """With probability ``epsilon`` a uniformly random plan, otherwise the plan whose ridge model
    predicts the highest reward (ties -> lowest index).

    Propensities are exact: the greedy plan has ``1 - epsilon + epsilon / K``, every other plan
    ``epsilon / K``, where ``K`` is the menu size.
    """

    type_name = "epsilon_greedy"
    Params = EpsilonGreedyParams

    def __init__(self, menu: PlanMenu, n_features: int, params=None, feature_names=None):
        super().__init__(menu, n_features, params, feature_names)
        self.arms = RidgeArms(menu.n_actions, n_features, self.params.ridge)

    def _probabilities(self, x: np.ndarray) -> np.ndarray:
        k = self.menu.n_actions
        p = np.full(k, self.params.epsilon / k)
        p[int(np.argmax(self.arms.predict(x)))] += 1.0 - self.params.epsilon
        return p

    def _update(self, x, plan, reward, strategy_rewards) -> None:
        a = menu_action(self.menu, plan)
        if a >= 0:  # a plan outside the menu teaches no arm
            self.arms.update(a, x, reward)

    def _warm_start(self, X, plan_rewards, depth_rewards) -> None:
        self.arms.update_all(X, plan_rewards)

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return self.arms.state()

    def _set_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.arms.set_state(arrays)
