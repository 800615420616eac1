"""The factored policy: exact propensities under the budget, semi-bandit credit, warm start."""

from __future__ import annotations

import numpy as np
import pytest

from ltrr.contracts.policy import PlanMenu
from ltrr.errors import ConfigError
from policies.factored import FactoredPolicy


def _trained(menu, params, seed=0, n=100):
    rng = np.random.default_rng(seed)
    pol = FactoredPolicy(menu, 3, params)
    for _ in range(n):
        x = rng.normal(size=3)
        plan = pol.select(x, rng)
        sr = np.clip(rng.normal(0.2 * x[0], 0.3, size=len(menu.strategies)), -1, 1)
        sr[np.asarray(plan.depths) == 0] = 0.0
        pol.update(x, plan, float(np.clip(sr.sum(), -1, 1)), sr)
    return pol


@pytest.mark.parametrize("params", [
    {"exploration": "epsilon_greedy", "epsilon": 0.3},
    {"exploration": "softmax", "temperature": 0.3},
    {"exploration": "epsilon_greedy", "epsilon": 0.2, "alpha": 0.5},
])
def test_plan_propensity_is_product_of_conditionals_and_empirical_frequency(menu, params):
    pol = _trained(menu, params)
    x = np.array([0.5, -1.0, 0.3])
    factors = pol.factor_probabilities(x)
    p = pol.probabilities(x)
    np.testing.assert_allclose(p, factors.prod(axis=1), rtol=1e-12)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    rng = np.random.default_rng(99)
    n = 20000
    plans = [pol.select(x, rng) for _ in range(n)]
    actions = np.array([pl.action for pl in plans])
    assert np.all(actions >= 0)  # never a plan outside the menu
    assert all(pl.total_depth <= menu.budget for pl in plans)
    freq = np.bincount(actions, minlength=menu.n_actions) / n
    se = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(freq - p) <= 4 * se + 1e-12)
    np.testing.assert_allclose([pl.propensity for pl in plans], p[actions])
    # strategy propensities are the marginal probability of each strategy's depth
    for s in range(len(menu.strategies)):
        depth_s = menu.plans[actions, s]
        pl = plans[0]
        emp = np.mean(depth_s == pl.depths[s])
        assert abs(emp - pl.strategy_propensities[s]) <= 4 * np.sqrt(emp * (1 - emp) / n) + 1e-3


def test_product_menu_plan_propensity_is_product_of_strategy_propensities():
    # bm25 always on and a budget that never binds: the menu is the full product of the depth
    # menus, so the strategies are independent and conditionals equal marginals
    menu = PlanMenu.build({"bm25": [10, 30], "dense": [0, 20]}, budget=1000)
    assert menu.n_actions == 4
    pol = _trained(menu, {"epsilon": 0.4})
    x = np.array([1.0, 0.2, -0.5])
    rng = np.random.default_rng(4)
    for _ in range(50):
        plan = pol.select(x, rng)
        assert plan.propensity == pytest.approx(np.prod(plan.strategy_propensities), rel=1e-12)


def test_all_off_is_excluded_so_conditionals_differ_from_marginals():
    menu = PlanMenu.build({"bm25": [0, 10], "dense": [0, 10]}, budget=100)
    pol = FactoredPolicy(menu, 1, {"epsilon": 0.5})  # untrained: ties -> depth 0 is greedy
    f = pol.factor_probabilities(np.ones(1))
    p = pol.probabilities(np.ones(1))
    rows = {tuple(int(v) for v in r): a for a, r in enumerate(menu.plans)}
    assert f[rows[(0, 10)]].tolist() == [0.75, 1.0]  # bm25 off forces dense on
    assert f[rows[(10, 0)]].tolist() == [0.25, 0.75]
    np.testing.assert_allclose(p[[rows[(0, 10)], rows[(10, 0)], rows[(10, 10)]]], [0.75, 0.1875, 0.0625])


def test_budget_restricts_later_strategies():
    # bm25 at 30 leaves 10 of the 40: dense may only be 0 or 10 after it
    menu = PlanMenu.build({"bm25": [0, 10, 30], "dense": [0, 10, 30]}, budget=40)
    pol = FactoredPolicy(menu, 2, {"epsilon": 1.0})  # uniform over what is allowed
    f = pol.factor_probabilities(np.array([1.0, 0.0]))
    for a, (b, _d) in enumerate(menu.plans):
        assert f[a, 0] == pytest.approx(1 / 3)
        if b == 0:
            assert f[a, 1] == pytest.approx(1 / 2)  # dense must be on: 10 or 30
        elif b == 10:
            assert f[a, 1] == pytest.approx(1 / 3)  # 0, 10 or 30 all fit
        else:
            assert f[a, 1] == pytest.approx(1 / 2)  # 0 or 10 fit


def test_semi_bandit_credit_trains_each_strategy(menu):
    pol = FactoredPolicy(menu, 2, {"epsilon": 0.0})
    x = np.array([1.0, 0.0])
    plan = menu.plan(menu.action_of((10, 30, 0)), 1.0, "log")
    for _ in range(30):
        pol.update(x, plan, 0.5, np.array([0.9, -0.2, 0.0]))
    scores = pol.depth_scores(x)
    opts = pol.depth_options
    assert scores[0, opts[0].index(10)] > 0.8 and scores[1, opts[1].index(30)] < -0.15
    assert scores[2, opts[2].index(10)] == 0.0  # xmr was off: no credit
    with pytest.raises(ValueError, match="factored policy learns from per-strategy credit"):
        pol.update(x, plan, 0.5)


def test_warm_start_from_single_strategy_plans(menu):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 3))
    R = rng.uniform(-1, 1, size=(40, menu.n_actions))
    pol = FactoredPolicy(menu, 3)
    pol.warm_start(X, R)
    a = menu.action_of((0, 30, 0))
    A_inv = np.linalg.inv(np.eye(3) + X.T @ X)
    x = rng.normal(size=3)
    j = pol.depth_options[1].index(30)
    assert pol.depth_scores(x)[1, j] == pytest.approx((A_inv @ (X.T @ R[:, a])) @ x, abs=1e-9)


def test_warm_start_needs_depth_rewards_when_single_plans_are_missing():
    menu = PlanMenu.build({"bm25": [0, 10], "dense": [0, 10]}, 20, plans=[{"bm25": 10, "dense": 10}])
    pol = FactoredPolicy(menu, 2)
    with pytest.raises(ConfigError, match="no plan with only strategy 'bm25' at depth 10"):
        pol.warm_start(np.ones((3, 2)), np.zeros((3, 1)))
    pol.warm_start(np.ones((3, 2)), np.zeros((3, 1)), depth_rewards=np.full((3, 2, 1), 0.5))
    assert pol.depth_scores(np.ones(2)).max() > 0


def test_decaying_epsilon_shrinks_every_strategys_exploration(menu):
    pol = FactoredPolicy(menu, 3, {"epsilon": 0.4, "decay_after": 5})
    x = np.array([0.3, -0.2, 0.5])
    rng = np.random.default_rng(0)
    before = pol.factor_probabilities(x)
    for _ in range(40):
        plan = pol.select(x, rng)
        pol.update(x, plan, 0.1, np.full(len(menu.strategies), 0.05))
    after = pol.factor_probabilities(x)
    eps = 0.4 * (5 / 40) ** (1 / 3)
    # a factor with n allowed depths: the greedy one gets 1 - eps + eps/n, the others eps/n
    off_before = before[(before > 0) & (before < 0.5)]
    off_after = after[(after > 0) & (after < 0.5)]
    assert off_after.size and off_after.max() < off_before.max()
    assert off_after.max() <= eps / 2 + 1e-12
    probs = pol.probabilities(x)
    assert probs.sum() == pytest.approx(1.0)
    plan = pol.select(x, rng)
    assert plan.propensity == pytest.approx(probs[plan.action])


def test_warm_start_with_observed_plans_teaches_the_units_of_observed_single_plans(menu):
    """A (strategy, depth) unit learns a row only when its single-strategy plan is observed."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(20, 3))
    R = rng.uniform(-1, 1, size=(20, menu.n_actions))
    a = menu.action_of((0, 30, 0))
    observed = np.ones((20, menu.n_actions), dtype=bool)
    observed[10:, a] = False
    pol = FactoredPolicy(menu, 3)
    pol.warm_start(X, R, observed=observed)
    A_inv = np.linalg.inv(np.eye(3) + X[:10].T @ X[:10])
    x = rng.normal(size=3)
    j = pol.depth_options[1].index(30)
    assert pol.depth_scores(x)[1, j] == pytest.approx((A_inv @ (X[:10].T @ R[:10, a])) @ x, abs=1e-9)
