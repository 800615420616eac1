"""Epsilon-greedy over the joint plan menu, with a ridge reward model per plan."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from policies.linear import LinearParams, RidgePlanPolicy, decayed_epsilon


class EpsilonGreedyParams(LinearParams):
    epsilon: float = Field(0.1, ge=0.0, le=1.0)
    #: 0: explore with ``epsilon`` forever (regret grows linearly). ``n > 0``: after ``n`` updates
    #: explore with ``epsilon * (n / t) ** (1/3)`` at update count ``t`` — the cube-root schedule
    #: under which epsilon-greedy's regret grows as ``T ** (2/3)``, i.e. sublinearly
    decay_after: int = Field(0, ge=0)


class EpsilonGreedy(RidgePlanPolicy[EpsilonGreedyParams]):
    """With probability ``epsilon`` a uniformly random plan, otherwise the plan whose ridge model
    predicts the highest reward (ties -> lowest index).

    Propensities are exact: the greedy plan has ``1 - epsilon + epsilon / K``, every other plan
    ``epsilon / K``, where ``K`` is the menu size and ``epsilon`` the current exploration rate
    (see ``decay_after``; it depends only on the number of updates so far, so it is known exactly
    at selection time).
    """

    type_name = "epsilon_greedy"
    Params = EpsilonGreedyParams

    @property
    def current_epsilon(self) -> float:
        """The exploration rate of the next decision."""
        return decayed_epsilon(self.params.epsilon, self.params.decay_after, self.n_updates_)

    def _probabilities(self, x: np.ndarray) -> np.ndarray:
        k = self.menu.n_actions
        eps = self.current_epsilon
        p = np.full(k, eps / k)
        p[int(np.argmax(self.arms.predict(x)))] += 1.0 - eps
        return p
