"""Boltzmann (softmax) exploration over the joint plan menu, with a ridge model per plan."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from policies.linear import LinearParams, RidgePlanPolicy


class SoftmaxParams(LinearParams):
    #: temperature ``tau``: ``p_a ∝ exp(theta_a . x / tau)``; small = greedy, large = uniform
    temperature: float = Field(0.1, gt=0.0)


class SoftmaxPolicy(RidgePlanPolicy[SoftmaxParams]):
    """Samples plan ``a`` with probability ``exp(mu_a / tau) / sum_b exp(mu_b / tau)`` where
    ``mu_a = theta_a . x`` is plan ``a``'s ridge-regression estimate of reward.

    Propensities are exact (computed with the log-sum-exp shift, so no overflow). A plan whose
    probability underflows to 0 is never sampled, so a logged propensity is always > 0.
    """

    type_name = "softmax"
    Params = SoftmaxParams

    def _probabilities(self, x: np.ndarray) -> np.ndarray:
        z = self.arms.predict(x) / self.params.temperature
        z -= z.max()
        p = np.exp(z)
        return p / p.sum()
