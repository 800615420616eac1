"""LinUCB against its closed form, and its propensities."""

from __future__ import annotations

import numpy as np
import pytest

from policies.linucb import LinUCB


def _closed_form(X, actions, rewards, n_actions, ridge, alpha, x):
    d = X.shape[1]
    out = np.empty(n_actions)
    for a in range(n_actions):
        rows = X[actions == a]
        A = ridge * np.eye(d) + rows.T @ rows
        b = rows.T @ rewards[actions == a]
        A_inv = np.linalg.inv(A)
        out[a] = (A_inv @ b) @ x + alpha * np.sqrt(x @ A_inv @ x)
    return out


def test_scores_equal_closed_form_after_random_updates(menu):
    rng = np.random.default_rng(7)
    d = 5
    pol = LinUCB(menu, d, {"alpha": 0.7, "ridge": 2.0})
    n = 400
    X = rng.normal(size=(n, d))
    actions = rng.integers(menu.n_actions, size=n)
    rewards = rng.uniform(-1, 1, size=n)
    for x, a, r in zip(X, actions, rewards, strict=True):
        pol.update(x, menu.plan(int(a), 1.0, "log"), float(r))
    for x in rng.normal(size=(5, d)):
        expected = _closed_form(X, actions, rewards, menu.n_actions, 2.0, 0.7, x)
        np.testing.assert_allclose(pol.scores(x), expected, rtol=0, atol=1e-9)


def test_warm_start_equals_closed_form_of_every_arm(menu):
    rng = np.random.default_rng(3)
    d = 4
    pol = LinUCB(menu, d, {"alpha": 0.5})
    X = rng.normal(size=(60, d))
    R = rng.uniform(-1, 1, size=(60, menu.n_actions))
    pol.warm_start(X, R)
    x = rng.normal(size=d)
    A_inv = np.linalg.inv(np.eye(d) + X.T @ X)
    expected = (R.T @ X) @ A_inv @ x + 0.5 * np.sqrt(x @ A_inv @ x)
    np.testing.assert_allclose(pol.scores(x), expected, atol=1e-9)
    assert pol.n_updates_ == 60


def test_pure_ucb_has_propensity_one(menu):
    pol = LinUCB(menu, 3)
    x = np.array([1.0, 0.5, -0.2])
    plan = pol.select(x, np.random.default_rng(0))
    assert plan.propensity == 1.0
    p = pol.probabilities(x)
    assert p[plan.action] == 1.0 and p.sum() == 1.0


@pytest.mark.parametrize("eps", [0.1, 0.5])
def test_epsilon_mixing_propensities_are_exact(menu, eps):
    rng = np.random.default_rng(11)
    pol = LinUCB(menu, 3, {"epsilon": eps})
    for _ in range(50):
        x = rng.normal(size=3)
        pol.update(x, pol.select(x, rng), float(rng.uniform(-1, 1)))
    x = np.array([0.3, -1.0, 0.8])
    p = pol.probabilities(x)
    k = menu.n_actions
    greedy = int(np.argmax(pol.scores(x)))
    assert p[greedy] == pytest.approx(1 - eps + eps / k)
    assert np.delete(p, greedy) == pytest.approx(np.full(k - 1, eps / k))
    n = 20000
    draws = np.array([pol.select(x, rng).action for _ in range(n)])
    freq = np.bincount(draws, minlength=k) / n
    se = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(freq - p) <= 4 * se + 1e-12)


def test_warm_start_with_observed_plans_updates_only_those_arms(menu):
    """``observed``: each row teaches only the plans it identifies; each arm equals the closed
    form on its own rows, and an arm no row observed keeps its prior."""
    rng = np.random.default_rng(5)
    d = 3
    pol = LinUCB(menu, d, {"alpha": 0.0})
    X = rng.normal(size=(30, d))
    R = rng.uniform(-1, 1, size=(30, menu.n_actions))
    observed = rng.random((30, menu.n_actions)) < 0.5
    observed[:, 0] = False
    pol.warm_start(X, R, observed=observed)
    x = rng.normal(size=d)
    for a in range(menu.n_actions):
        rows = observed[:, a]
        A_inv = np.linalg.inv(np.eye(d) + X[rows].T @ X[rows])
        assert pol.scores(x)[a] == pytest.approx((A_inv @ (X[rows].T @ R[rows, a])) @ x, abs=1e-9)
    assert pol.scores(x)[0] == 0.0
    with pytest.raises(ValueError, match="observed has shape"):
        pol.warm_start(X, R, observed=observed[:, :2])
