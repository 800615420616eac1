"""Boltzmann (softmax) exploration over the joint plan menu, with a ridge model per plan."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from policies.base import PlanMenu, Policy
from policies.linear import LinearParams, RidgeArms, menu_action


class SoftmaxParams(LinearParams):
    #: temperature ``tau``: ``p_a ∝ exp(theta_a . x / tau)``; small = greedy, large = uniform
    temperature: float = Field(0.1, gt=0.0)


class SoftmaxPolicy(Policy):
    """Samples plan ``a`` with probability ``exp(mu_a / tau) / sum_b exp(mu_b / tau)`` where
    ``mu_a = theta_a . x`` is plan ``a``'s ridge-regression estimate of reward.

    Propensities are exact (computed with the log-sum-exp shift, so no overflow). A plan whose
    probability underflows to 0 is never sampled, so a logged propensity is always > 0.
    """

    type_name = "softmax"
    Params = SoftmaxParams

    def __init__(self, menu: PlanMenu, n_features: int, params=None, feature_names=None):
        super().__init__(menu, n_features, params, feature_names)
        self.arms = RidgeArms(menu.n_actions, n_features, self.params.ridge)

    def _probabilities(self, x: np.ndarray) -> np.ndarray:
        z = self.arms.predict(x) / self.params.temperature
        z -= z.max()
        p = np.exp(z)
        return p / p.sum()

    def _update(self, x, plan, reward, strategy_rewards) -> None:
        a = menu_action(self.menu, plan)
        if a >= 0:
            self.arms.update(a, x, reward)

    def _warm_start(self, X, plan_rewards, depth_rewards) -> None:
        self.arms.update_all(X, plan_rewards)

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return self.arms.state()

    def _set_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.arms.set_state(arrays)
