"""Epsilon-greedy over the joint plan menu, with a ridge reward model per plan."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from policies.linear import LinearParams, RidgePlanPolicy


class EpsilonGreedyParams(LinearParams):
    epsilon: float = Field(0.1, ge=0.0, le=1.0)


class EpsilonGreedy(RidgePlanPolicy):
    """With probability ``epsilon`` a uniformly random plan, otherwise the plan whose ridge model
    predicts the highest reward (ties -> lowest index).

    Propensities are exact: the greedy plan has ``1 - epsilon + epsilon / K``, every other plan
    ``epsilon / K``, where ``K`` is the menu size.
    """

    type_name = "epsilon_greedy"
    Params = EpsilonGreedyParams

    def _probabilities(self, x: np.ndarray) -> np.ndarray:
        k = self.menu.n_actions
        p = np.full(k, self.params.epsilon / k)
        p[int(np.argmax(self.arms.predict(x)))] += 1.0 - self.params.epsilon
        return p
