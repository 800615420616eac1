"""Exact propensities equal empirical frequencies; estimated ones are close; all lie in (0, 1]."""

from __future__ import annotations

import numpy as np
import pytest

from policies.epsilon_greedy import EpsilonGreedy
from policies.softmax import SoftmaxPolicy
from policies.thompson import LinearThompsonSampling


def _trained(cls, menu, params, seed=0, n=80):
    rng = np.random.default_rng(seed)
    pol = cls(menu, 3, params)
    for _ in range(n):
        x = rng.normal(size=3)
        plan = pol.select(x, rng)
        pol.update(x, plan, float(np.tanh(x[0] * (plan.action % 3 - 1))))
    return pol


@pytest.mark.parametrize("cls,params", [
    (EpsilonGreedy, {"epsilon": 0.3}),
    (SoftmaxPolicy, {"temperature": 0.2}),
])
def test_exact_propensity_equals_empirical_frequency(menu, cls, params):
    pol = _trained(cls, menu, params)
    x = np.array([0.8, -0.4, 0.1])
    p = pol.probabilities(x)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(p > 0) and np.all(p <= 1)
    rng = np.random.default_rng(123)
    n = 20000
    plans = [pol.select(x, rng) for _ in range(n)]
    actions = np.array([pl.action for pl in plans])
    freq = np.bincount(actions, minlength=menu.n_actions) / n
    se = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(freq - p) <= 4 * se + 1e-12)
    # the propensity logged with each plan is the probability of that plan
    logged = np.array([pl.propensity for pl in plans])
    np.testing.assert_allclose(logged, p[actions])
    assert not any(pl.estimated for pl in plans)


def test_softmax_closed_form(menu):
    pol = _trained(SoftmaxPolicy, menu, {"temperature": 0.5})
    x = np.array([0.2, 0.1, -0.3])
    mu = pol.arms.theta @ x
    expected = np.exp(mu / 0.5) / np.exp(mu / 0.5).sum()
    np.testing.assert_allclose(pol.probabilities(x), expected, rtol=1e-12)


def test_thompson_estimated_propensity_is_close_to_empirical(menu):
    pol = _trained(LinearThompsonSampling, menu, {"scale": 0.5, "n_propensity_draws": 1000})
    x = np.array([0.8, -0.4, 0.1])
    rng = np.random.default_rng(5)
    n = 4000
    plans = [pol.select(x, rng) for _ in range(n)]
    actions = np.array([pl.action for pl in plans])
    freq = np.bincount(actions, minlength=menu.n_actions) / n
    assert all(pl.estimated for pl in plans)
    # each decision's own estimate (1000 draws) is close to the long-run frequency of its plan
    logged = np.array([pl.propensity for pl in plans])
    se = np.sqrt(freq[actions] * (1 - freq[actions]) * (1 / n + 1 / 1000))
    assert np.mean(np.abs(logged - freq[actions]) <= 4 * se + 1 / 1001) > 0.99
    p = pol.probabilities(x)
    assert p.sum() == pytest.approx(1.0)
    se_all = np.sqrt(p * (1 - p) * (1 / n + 1 / 1000))
    assert np.all(np.abs(p - freq) <= 4 * se_all + 2 / 1001)


def test_thompson_propensity_floor(menu):
    pol = LinearThompsonSampling(menu, 3, {"n_propensity_draws": 9, "scale": 1e-3})
    # one plan dominates so strongly that the others never win a draw
    for _ in range(20):
        pol.update(np.array([1.0, 0, 0]), menu.plan(0, 1.0, "log"), 1.0)
    p = pol.probabilities(np.array([1.0, 0, 0]))
    assert np.all(p > 0)
    floor = 1 / 10
    assert p[1] == pytest.approx(floor / (1 + floor * (menu.n_actions - 1)))
    plan = pol.select(np.array([1.0, 0, 0]), np.random.default_rng(0))
    assert plan.action == 0 and plan.propensity == 1.0 and plan.estimated


def test_thompson_decisions_do_not_depend_on_the_propensity_draws(menu):
    # the estimate uses a child generator, so the decision stream is the same for any draw count
    a = _trained(LinearThompsonSampling, menu, {"n_propensity_draws": 10})
    b = _trained(LinearThompsonSampling, menu, {"n_propensity_draws": 500})
    xs = np.random.default_rng(3).normal(size=(30, 3))
    r1, r2 = np.random.default_rng(0), np.random.default_rng(0)
    assert [a.select(x, r1).action for x in xs] == [b.select(x, r2).action for x in xs]


def test_epsilon_decays_by_the_cube_root_schedule_and_propensities_follow(menu):
    pol = _trained(EpsilonGreedy, menu, {"epsilon": 0.3, "decay_after": 10}, n=80)
    assert pol.n_updates_ == 80
    eps = 0.3 * (10 / 80) ** (1 / 3)
    assert pol.current_epsilon == pytest.approx(eps)
    x = np.array([0.8, -0.4, 0.1])
    p = pol.probabilities(x)
    k = menu.n_actions
    assert sorted(np.round(p, 12))[:k - 1] == [round(eps / k, 12)] * (k - 1)
    assert p.max() == pytest.approx(1 - eps + eps / k)
    plan = pol.select(x, np.random.default_rng(0))
    assert plan.propensity == pytest.approx(p[plan.action])
    constant = _trained(EpsilonGreedy, menu, {"epsilon": 0.3}, n=80)
    assert constant.current_epsilon == 0.3
    early = _trained(EpsilonGreedy, menu, {"epsilon": 0.3, "decay_after": 500}, n=80)
    assert early.current_epsilon == 0.3
