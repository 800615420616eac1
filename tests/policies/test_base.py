"""Bad input to policies: menus, rewards, propensities and contexts are rejected with clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from ltrr.contracts.policy import PlanMenu
from ltrr.errors import ConfigError
from ltrr.types import Plan
from policies.linucb import LinUCB


def test_menu_over_budget_names_the_plan():
    with pytest.raises(ConfigError, match="plan 1 draws 60 candidates, over the budget of 50"):
        PlanMenu.build({"bm25": [0, 10, 50], "dense": [0, 10]}, 50,
                       plans=[{"bm25": 10}, {"bm25": 50, "dense": 10}])


def test_menu_unknown_strategy_is_named():
    with pytest.raises(ConfigError, match="plan 0 names unknown strategy 'xmr'; strategies: bm25, dense"):
        PlanMenu.build({"bm25": [0, 10], "dense": [0, 10]}, 50, plans=[{"xmr": 10}])


def test_menu_from_dict_is_validated():
    d = {"strategies": ["bm25"], "options": [[0, 10]], "plans": [[10], [40]], "budget": 20}
    with pytest.raises(ConfigError, match="plan 1 draws 40 candidates, over the budget of 20"):
        PlanMenu.from_dict(d)
    d = {"strategies": ["bm25"], "options": [[0, 10]], "plans": [[15]], "budget": 20}
    with pytest.raises(ConfigError, match=r"plan 0 gives strategy 'bm25' depth 15, which is not in its menu \[0, 10\]"):
        PlanMenu.from_dict(d)


def test_reward_range_is_a_param_and_rejects_with_the_value(menu):
    pol = LinUCB(menu, 3)
    x = np.ones(3)
    plan = pol.select(x, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"Reward 1\.5 is outside the configured range \[-1\.0, 1\.0\]"):
        pol.update(x, plan, 1.5)
    with pytest.raises(ValueError, match=r"Reward nan is outside"):
        pol.update(x, plan, float("nan"))
    wide = LinUCB(menu, 3, {"reward_range": [-5, 5]})
    wide.update(x, plan, 1.5)
    assert wide.n_updates_ == 1
    with pytest.raises(ConfigError, match="reward_range must be finite with lo < hi"):
        LinUCB(menu, 3, {"reward_range": [1, -1]})


def test_strategy_rewards_are_checked(menu):
    pol = LinUCB(menu, 3)
    x = np.ones(3)
    plan = pol.select(x, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"Reward 2\.0 of strategy 'dense' is outside the configured range"):
        pol.update(x, plan, 0.5, np.array([0.0, 2.0, 0.0]))
    with pytest.raises(ValueError, match=r"strategy_rewards has shape \(2,\), expected \(3,\)"):
        pol.update(x, plan, 0.5, np.array([0.0, 0.0]))


def test_zero_propensity_is_an_error_not_a_division(menu):
    with pytest.raises(ValueError, match=r"propensity must be in \(0, 1\]; got 0\.0"):
        Plan(menu.strategies, (10, 0, 0), propensity=0.0)
    pol = LinUCB(menu, 3)
    plan = Plan(menu.strategies, (10, 0, 0), propensity=0.5, action=menu.action_of((10, 0, 0)))
    object.__setattr__(plan, "propensity", 0.0)  # a corrupted log row that bypassed the constructor
    with pytest.raises(ValueError, match="Cannot learn from an event whose propensity is 0.0"):
        pol.update(np.ones(3), plan, 1.0)
    assert pol.n_updates_ == 0


def test_non_finite_context_names_the_feature(menu):
    pol = LinUCB(menu, 3, feature_names=["query_len", "hour", "prior_ctr"])
    with pytest.raises(ValueError, match=r"Context feature 'hour' is inf \(NaN or inf is not allowed\)"):
        pol.select(np.array([1.0, np.inf, 0.0]), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"Context feature 'prior_ctr' is nan"):
        pol.probabilities(np.array([1.0, 0.0, np.nan]))
    with pytest.raises(ValueError, match=r"Context feature 'query_len' of warm-start row 1 is nan"):
        pol.warm_start(np.array([[1.0, 0, 0], [np.nan, 0, 0]]), np.zeros((2, menu.n_actions)))


def test_warm_start_rejects_out_of_range_rewards(menu):
    pol = LinUCB(menu, 3)
    R = np.zeros((2, menu.n_actions))
    R[1, 4] = -3.0
    with pytest.raises(ValueError, match=r"plan_rewards\[1, 4\] = -3\.0 is outside the configured range"):
        pol.warm_start(np.ones((2, 3)), R)


def test_plan_over_other_strategies_is_rejected(menu):
    pol = LinUCB(menu, 3)
    plan = Plan(("bm25", "dense"), (10, 0), propensity=1.0)
    with pytest.raises(ValueError, match=r"plan is over strategies \['bm25', 'dense'\]"):
        pol.update(np.ones(3), plan, 0.0)
