"""Per-action ridge regression with Sherman-Morrison updates, shared by the linear bandits."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
from pydantic import Field, model_validator

from ltrr.contracts.policy import PlanMenu, Policy
from ltrr.params import Params


def decayed_epsilon(epsilon: float, decay_after: int, n_updates: int) -> float:
    """Exploration rate after ``n_updates`` updates: ``epsilon`` until ``decay_after`` (0 = never
    decay), then ``epsilon * (decay_after / t) ** (1/3)`` — the cube-root schedule under which
    epsilon-greedy's regret grows as ``T ** (2/3)``. It depends only on the update count, so the
    rate (and every propensity) is known exactly at selection time."""
    if decay_after == 0 or n_updates <= decay_after:
        return float(epsilon)
    return float(epsilon) * (decay_after / n_updates) ** (1.0 / 3.0)


class LinearParams(Params):
    """Parameters shared by the ridge-based policies."""

    #: L2 penalty ``lambda`` of each plan's ridge model (the prior precision)
    ridge: float = Field(1.0, gt=0.0)
    #: rewards (and strategy rewards) outside ``[lo, hi]`` are rejected by ``update``
    reward_range: tuple[float, float] = (-1.0, 1.0)

    @model_validator(mode="after")
    def _range_ordered(self):
        lo, hi = self.reward_range
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValueError(f"reward_range must be finite with lo < hi; got {self.reward_range}")
        return self


class RidgeArms:
    """One ridge regression per action: ``theta_a = A_a^{-1} b_a`` with ``A_a = lambda I + sum x x^T``.

    ``A_inv`` is kept up to date with the Sherman-Morrison identity (O(d^2) per update, no matrix
    inverse per decision); ``theta`` is cached so scoring all actions is one matrix product.
    """

    def __init__(self, n_actions: int, n_features: int, ridge: float = 1.0):
        self.A_inv = np.repeat(np.eye(n_features)[None, :, :] / ridge, n_actions, axis=0)
        self.b = np.zeros((n_actions, n_features))
        self.theta = np.zeros((n_actions, n_features))
        self.counts = np.zeros(n_actions, dtype=np.int64)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Estimated reward of every action for context ``x``."""
        return self.theta @ x

    def width(self, x: np.ndarray) -> np.ndarray:
        """``sqrt(x^T A_a^{-1} x)`` for every action (the confidence width)."""
        return np.sqrt(np.maximum((self.A_inv @ x) @ x, 0.0))

    def update(self, action: int, x: np.ndarray, reward: float, weight: float = 1.0) -> None:
        A_inv = self.A_inv[action]
        Ax = A_inv @ x
        denom = 1.0 / weight + x @ Ax
        A_inv -= np.outer(Ax, Ax) / denom
        self.b[action] += weight * reward * x
        self.theta[action] = A_inv @ self.b[action]
        self.counts[action] += 1

    def update_many(self, actions: np.ndarray, x: np.ndarray, rewards: np.ndarray) -> None:
        """Sherman-Morrison update of several *distinct* actions with the same context, batched."""
        A_inv = self.A_inv[actions]  # (m, d, d) copy
        Ax = A_inv @ x
        denom = 1.0 + Ax @ x
        A_inv -= Ax[:, :, None] * Ax[:, None, :] / denom[:, None, None]
        self.A_inv[actions] = A_inv
        self.b[actions] += rewards[:, None] * x[None, :]
        self.theta[actions] = np.einsum("mij,mj->mi", A_inv, self.b[actions])
        self.counts[actions] += 1

    def update_all(self, X: np.ndarray, R: np.ndarray) -> None:
        """Full-information batch update: every action ``a`` learns ``(X[i], R[i, a])`` for all ``i``.

        All actions see the same contexts, so each precision grows by the same ``X^T X``; this
        costs one ``d x d`` inverse per action per batch (warm start, never per decision).
        """
        A = np.linalg.inv(self.A_inv) + (X.T @ X)[None, :, :]
        self.A_inv = np.linalg.inv(A)
        # keep the inverse exactly symmetric so widths stay real
        self.A_inv = 0.5 * (self.A_inv + np.swapaxes(self.A_inv, 1, 2))
        self.b += R.T @ X
        self.theta = np.einsum("aij,aj->ai", self.A_inv, self.b)
        self.counts += X.shape[0]

    def state(self, prefix: str = "") -> dict[str, np.ndarray]:
        return {f"{prefix}A_inv": self.A_inv, f"{prefix}b": self.b, f"{prefix}counts": self.counts}

    def set_state(self, arrays: dict[str, np.ndarray], prefix: str = "") -> None:
        self.A_inv = np.array(arrays[f"{prefix}A_inv"], dtype=np.float64)
        self.b = np.array(arrays[f"{prefix}b"], dtype=np.float64)
        self.counts = np.array(arrays[f"{prefix}counts"], dtype=np.int64)
        self.theta = np.einsum("aij,aj->ai", self.A_inv, self.b)


def menu_action(menu, plan) -> int:
    """The menu row of ``plan``: its recorded action if it matches, else a lookup by depths (-1 if absent)."""
    a = plan.action
    if 0 <= a < menu.n_actions and tuple(int(d) for d in menu.plans[a]) == tuple(plan.depths):
        return a
    return menu.action_of(plan.depths)


#: the parameter model of a ridge-per-plan policy (each policy extends LinearParams)
LP = TypeVar("LP", bound=LinearParams)


class RidgePlanPolicy(Policy[LP]):
    """Base of the joint policies that keep one ridge model per menu plan (``self.arms``).

    It owns what they share: building the models, learning from the chosen plan, warm start from
    full-information plan rewards, and the state arrays saved in ``state.npz``. Subclasses only
    say how plans are chosen (``_probabilities`` / ``_select``).
    """

    def __init__(self, menu: PlanMenu, n_features: int, params=None, feature_names=None):
        super().__init__(menu, n_features, params, feature_names)
        self.arms = RidgeArms(menu.n_actions, n_features, self.params.ridge)

    def _update(self, x, plan, reward, strategy_rewards) -> None:
        a = menu_action(self.menu, plan)
        if a >= 0:  # a plan outside the menu teaches no arm
            self.arms.update(a, x, reward)

    def _warm_start(self, X, plan_rewards, depth_rewards, observed) -> None:
        if observed is None:
            self.arms.update_all(X, plan_rewards)
            return
        for i in range(X.shape[0]):  # each row updates only the plans it observed
            acts = np.flatnonzero(observed[i])
            if acts.size:
                self.arms.update_many(acts, X[i], plan_rewards[i, acts])

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return self.arms.state()

    def _set_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.arms.set_state(arrays)
