"""On a seeded contextual problem the learned policies find each query type's best plan."""

from __future__ import annotations

import numpy as np
import pytest

from ltrr import registry

ROUNDS = 3000
# expected reward per round: best plan 0.872, a uniformly random plan 0.387
FLOORS = {"linucb": 0.83, "thompson": 0.83, "softmax": 0.78, "factored": 0.79,
          "epsilon_greedy": 0.77, "vw": 0.78}


def _play(pol, world, rng, rounds):
    exp_r = np.empty(rounds)
    for i in range(rounds):
        t, x = world.context()
        plan = pol.select(x, rng)
        r, sr = world.outcome(t, plan.depths)
        pol.update(x, plan, float(np.clip(r, -1, 1)), np.clip(sr, -1, 1))
        exp_r[i] = world.expected_reward(t)[plan.action]
    return exp_r


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_learns_the_best_plan_per_query_type(name, menu, world_factory):
    world = world_factory(menu, seed=1)
    pol = registry.get("policy", name)(menu, world.n_features)
    exp_r = _play(pol, world, np.random.default_rng(2), ROUNDS)
    assert exp_r[-1000:].mean() >= FLOORS[name]
    assert exp_r[-1000:].mean() > exp_r[:300].mean()
    if name == "linucb":
        # the UCB argmax for a clean context of each type is that type's best plan
        for t in range(world.n_types):
            x = np.zeros(world.n_features)
            x[t] = x[3] = 1.0
            assert pol.select(x, np.random.default_rng(0)).action == int(np.argmax(world.expected_reward(t)))


@pytest.mark.parametrize("name", ["linucb", "thompson", "factored", "vw"])
def test_warm_start_from_full_information_helps_from_the_first_round(name, menu, world_factory):
    world = world_factory(menu, seed=7)
    n = 300
    X = np.empty((n, world.n_features))
    R = np.empty((n, menu.n_actions))
    for i in range(n):
        t, X[i] = world.context()
        R[i], _ = world.full_information(t)
    cold = registry.get("policy", name)(menu, world.n_features)
    warm = registry.get("policy", name)(menu, world.n_features)
    warm.warm_start(X, np.clip(R, -1, 1))
    first_cold = _play(cold, world_factory(menu, seed=8), np.random.default_rng(0), 200).mean()
    first_warm = _play(warm, world_factory(menu, seed=8), np.random.default_rng(0), 200).mean()
    assert first_warm >= 0.78
    assert first_warm > first_cold + 0.03
