"""Per-action ridge regression with Sherman-Morrison updates, shared by linear bandits."""

from __future__ import annotations

import numpy as np


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
        return np.sqrt(np.maximum(np.einsum("i,aij,j->a", x, self.A_inv, x), 0.0))

    def update(self, action: int, x: np.ndarray, reward: float, weight: float = 1.0) -> None:
        A_inv = self.A_inv[action]
        Ax = A_inv @ x
        denom = 1.0 / weight + x @ Ax
        A_inv -= np.outer(Ax, Ax) / denom
        self.b[action] += weight * reward * x
        self.theta[action] = A_inv @ self.b[action]
        self.counts[action] += 1

    def state(self, prefix: str = "") -> dict[str, np.ndarray]:
        return {f"{prefix}A_inv": self.A_inv, f"{prefix}b": self.b, f"{prefix}counts": self.counts}

    def set_state(self, arrays: dict[str, np.ndarray], prefix: str = "") -> None:
        self.A_inv = np.array(arrays[f"{prefix}A_inv"], dtype=np.float64)
        self.b = np.array(arrays[f"{prefix}b"], dtype=np.float64)
        self.counts = np.array(arrays[f"{prefix}counts"], dtype=np.int64)
        self.theta = np.einsum("aij,aj->ai", self.A_inv, self.b)
