"""Shared fixtures of the policy tests: a small plan menu and a seeded synthetic world."""

from __future__ import annotations

import numpy as np
import pytest

from ltrr.contracts.policy import PlanMenu

STRATEGIES = {"bm25": [0, 10, 30], "dense": [0, 10, 30], "xmr": [0, 10, 30]}


@pytest.fixture
def menu() -> PlanMenu:
    # 3 strategies x {0, 10, 30} under a budget of 40 -> 13 plans; the budget binds (30 + 30 > 40)
    return PlanMenu.build(STRATEGIES, budget=40)


class ContextualWorld:
    """Three query types, each favouring a different strategy.

    For each round the clicked item sits at a random rank in every strategy's list: geometric
    (p = 0.15) for the favoured strategy, uniform on 1..1000 otherwise. Strategy ``s`` at depth
    ``d`` finds it when its rank is <= d. Plan reward = found by any strategy - cost * candidates;
    strategy reward = found by s - cost * d_s. The best plan for every type is its favoured
    strategy alone at depth 30 (expected reward 1 - 0.85^30 - 0.12 ~ 0.87).
    """

    n_types = 3
    n_features = 6
    cost = 0.004

    def __init__(self, menu: PlanMenu, seed: int):
        self.menu = menu
        self.rng = np.random.default_rng(seed)

    def context(self) -> tuple[int, np.ndarray]:
        t = int(self.rng.integers(self.n_types))
        x = np.zeros(self.n_features)
        x[t] = 1.0
        x[3] = 1.0  # bias
        x[4:] = self.rng.normal(0.0, 0.3, size=2)  # distractors
        return t, x

    def found_prob(self, t: int) -> np.ndarray:
        """``[n_plans, n_strategies]``: P(strategy s at plan a's depth finds the click) for type t."""
        d = self.menu.plans.astype(float)
        fav = 1.0 - 0.85 ** d
        other = np.minimum(d, 1000.0) / 1000.0
        s_idx = np.arange(len(self.menu.strategies))
        return np.where(s_idx[None, :] == t, fav, other)

    def expected_reward(self, t: int) -> np.ndarray:
        q = self.found_prob(t)
        return 1.0 - np.prod(1.0 - q, axis=1) - self.cost * self.menu.plans.sum(axis=1)

    def outcome(self, t: int, depths: tuple[int, ...]) -> tuple[float, np.ndarray]:
        ranks = np.where(np.arange(len(depths)) == t, 1 + self.rng.geometric(0.15, size=len(depths)) - 1,
                         self.rng.integers(1, 1001, size=len(depths)))
        d = np.asarray(depths)
        found = (ranks <= d) & (d > 0)
        reward = float(found.any()) - self.cost * d.sum()
        return reward, found.astype(float) - self.cost * d

    def full_information(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """One round's reward for every plan (the same click ranks for all of them) and per depth."""
        n_s = len(self.menu.strategies)
        ranks = np.where(np.arange(n_s) == t, self.rng.geometric(0.15, size=n_s),
                         self.rng.integers(1, 1001, size=n_s))
        found = (ranks[None, :] <= self.menu.plans) & (self.menu.plans > 0)
        return found.any(axis=1) - self.cost * self.menu.plans.sum(axis=1), ranks


@pytest.fixture
def world_factory():
    return ContextualWorld
