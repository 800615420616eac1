"""The Vowpal Wabbit backend: pmf as exact propensities, learning, persistence."""

from __future__ import annotations

import numpy as np
import pytest

from policies.vw import VowpalWabbitPolicy


@pytest.fixture(params=["squarecb", "epsilon", "bag"])
def exploration(request):
    return request.param


def _run(pol, menu, rng, n, best=3):
    """Reward 1 for plan ``best`` when x[0] > 0, else for plan ``best + 1``."""
    for _ in range(n):
        x = rng.normal(size=3)
        plan = pol.select(x, rng)
        target = best if x[0] > 0 else best + 1
        pol.update(x, plan, 1.0 if plan.action == target else 0.0)


def test_pmf_sums_to_one_and_learns(menu, exploration):
    rng = np.random.default_rng(0)
    pol = VowpalWabbitPolicy(menu, 3, {"exploration": exploration})
    _run(pol, menu, rng, 600)
    for x0, target in ((1.5, 3), (-1.5, 4)):
        p = pol.probabilities(np.array([x0, 0.0, 0.0]))
        assert p.sum() == pytest.approx(1.0, abs=1e-12)
        assert np.all(p >= 0) and np.all(p <= 1)
        assert int(np.argmax(p)) == target
    plan = pol.select(np.array([1.5, 0.0, 0.0]), rng)
    assert 0 < plan.propensity <= 1 and not plan.estimated


def test_epsilon_pmf_is_exact(menu):
    pol = VowpalWabbitPolicy(menu, 3, {"exploration": "epsilon", "epsilon": 0.2})
    _run(pol, menu, np.random.default_rng(1), 300)
    p = pol.probabilities(np.array([1.0, 0.3, -0.2]))
    k = menu.n_actions
    np.testing.assert_allclose(np.sort(p)[:-1], 0.2 / k, rtol=1e-6)
    assert p.max() == pytest.approx(1 - 0.2 + 0.2 / k, rel=1e-6)


def test_save_load_same_decisions(tmp_path, menu, exploration):
    rng = np.random.default_rng(3)
    pol = VowpalWabbitPolicy(menu, 3, {"exploration": exploration, "seed": 5})
    _run(pol, menu, rng, 200)
    pol.save(tmp_path / "vw")
    assert (tmp_path / "vw" / "model.vw").exists()
    loaded = VowpalWabbitPolicy.load(tmp_path / "vw")
    assert loaded.n_updates_ == 200 and loaded.vw_args() == pol.vw_args()
    xs = np.random.default_rng(8).normal(size=(30, 3))
    r1, r2 = np.random.default_rng(21), np.random.default_rng(21)
    assert [pol.select(x, r1) for x in xs] == [loaded.select(x, r2) for x in xs]
    for x in xs[:5]:
        np.testing.assert_array_equal(pol.probabilities(x), loaded.probabilities(x))


def test_warm_start_learns_every_plan_cost(menu):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(150, 3))
    R = np.zeros((150, menu.n_actions))
    R[X[:, 0] > 0, 2] = 1.0
    R[X[:, 0] <= 0, 6] = 1.0
    pol = VowpalWabbitPolicy(menu, 3, {"exploration": "epsilon", "epsilon": 0.1})
    pol.warm_start(X, R)
    assert int(np.argmax(pol.probabilities(np.array([1.5, 0, 0])))) == 2
    assert int(np.argmax(pol.probabilities(np.array([-1.5, 0, 0])))) == 6
