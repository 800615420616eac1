"""LinUCB over the joint plan menu (disjoint model: one ridge regression per plan)."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from ltrr.types import Plan
from policies.linear import LinearParams, RidgePlanPolicy


class LinUCBParams(LinearParams):
    #: width of the upper confidence bound, ``score = theta_a . x + alpha * sqrt(x^T A_a^{-1} x)``
    alpha: float = Field(1.0, ge=0.0)
    #: probability of a uniformly random plan instead of the UCB argmax (0 = pure UCB)
    epsilon: float = Field(0.0, ge=0.0, le=1.0)


class LinUCB(RidgePlanPolicy[LinUCBParams]):
    """Disjoint LinUCB (Li et al., 2010): each plan in the menu has its own ridge model of reward.

    Why per-plan and not a shared model over ``x ⊗ plan features``: with ~16 context features
    and ~20-60 plans, the shared model has hundreds of dimensions and its confidence width costs
    ``O(K d^2 p^2)`` per decision, far above the 200 µs budget, while per-plan models cost
    ``O(K d^2)`` and are exact. Sharing across plans is left to the factored policy and the VW
    backend (which sees strategy x depth indicator features).

    ``A_a^{-1}`` is maintained by Sherman-Morrison, so a decision never inverts a matrix.

    Propensities: the UCB argmax (ties -> lowest index) is deterministic, so with
    ``epsilon = 0`` the chosen plan has propensity 1 and every other plan 0. Such logs support
    no inverse-propensity evaluation of *other* policies. With ``epsilon > 0`` a uniform plan is
    mixed in and the propensities are exact: ``1 - epsilon + epsilon / K`` for the argmax,
    ``epsilon / K`` for the rest.
    """

    type_name = "linucb"
    Params = LinUCBParams

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Upper confidence bound of every plan's reward for context ``x``."""
        x = self._check_x(x)
        return self._scores(x)

    def _scores(self, x: np.ndarray) -> np.ndarray:
        return self.arms.predict(x) + self.params.alpha * self.arms.width(x)

    def _probabilities(self, x: np.ndarray) -> np.ndarray:
        k = self.menu.n_actions
        eps = self.params.epsilon
        p = np.full(k, eps / k)
        p[int(np.argmax(self._scores(x)))] += 1.0 - eps
        return p

    def _select(self, x: np.ndarray, rng: np.random.Generator) -> Plan:
        if self.params.epsilon == 0.0:
            # no randomness is consumed, so a pure UCB policy is deterministic given its state
            a = int(np.argmax(self._scores(x)))
            return self.menu.plan(a, 1.0, self.type_name, strategy_propensities=[1.0] * len(self.menu.strategies))
        return super()._select(x, rng)
