"""Off-policy estimators: textbook values on hand-made inputs, validation errors, mergeable sums,
the bootstrap, and the factored plan estimator on a seeded additive problem."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ltrr.errors import ConfigError, DataError
from ltrr.offline.bootstrap import bootstrap_interval
from ltrr.offline.estimators import (
    DM,
    DR,
    ESTIMATORS,
    IPS,
    SNDR,
    SNIPS,
    BanditLog,
    Estimate,
    FactoredIPS,
    RoundTerms,
    SwitchDR,
    estimate,
    make_estimator,
    merge,
    plan_arrays,
)
from ltrr.types import Plan


def _problem(seed: int = 0, n: int = 400, n_actions: int = 6, len_list: int = 3):
    rng = np.random.default_rng(seed)
    action_dist = rng.dirichlet(np.ones(n_actions), size=(n, len_list)).transpose(0, 2, 1)
    q_hat = rng.random((n, n_actions, len_list))
    action = rng.integers(0, n_actions, n)
    position = rng.integers(0, len_list, n)
    pscore = rng.uniform(0.05, 1.0, n)
    reward = rng.binomial(1, 0.4, n).astype(float)
    return dict(
        reward=reward, action=action, pscore=pscore, action_dist=action_dist, position=position,
        estimated_rewards_by_reg_model=q_hat,
    )


def _textbook(arrays):
    """Per-round pieces written out with an explicit loop, independent of the library code."""
    r, a, ps, pi, p, q = (arrays[k] for k in (
        "reward", "action", "pscore", "action_dist", "position", "estimated_rewards_by_reg_model"))
    n = len(r)
    w = np.array([pi[i, a[i], p[i]] / ps[i] for i in range(n)])
    q_fact = np.array([q[i, a[i], p[i]] for i in range(n)])
    q_tgt = np.array([sum(pi[i, b, p[i]] * q[i, b, p[i]] for b in range(pi.shape[1]))
                      for i in range(n)])
    return r, w, q_fact, q_tgt


def test_estimators_match_textbook_formulas():
    arrays = _problem()
    r, w, qf, qt = _textbook(arrays)
    expected = {
        "ips": np.mean(w * r),
        "ips(lambda=2)": np.mean(np.minimum(w, 2.0) * r),
        "snips": np.sum(w * r) / np.sum(w),
        "dm": np.mean(qt),
        "dr": np.mean(qt + w * (r - qf)),
        "dr(lambda=2)": np.mean(qt + np.minimum(w, 2.0) * (r - qf)),
        "sndr": np.mean(qt) + np.sum(w * (r - qf)) / np.sum(w),
        "switch-dr": np.mean(qt + (w <= 1.0) * w * (r - qf)),
        "switch-dr(tau=3)": np.mean(qt + (w <= 3.0) * w * (r - qf)),
    }
    ests = [IPS(), IPS(lambda_=2.0), SNIPS(), DM(), DR(), DR(lambda_=2.0), SNDR(), SwitchDR(),
            SwitchDR(tau=3.0)]
    assert [e.label for e in ests] == list(expected)
    for est in ests:
        assert est.estimate_policy_value(**arrays) == pytest.approx(expected[est.label], abs=1e-12)
    # sanity of the fixture: weights on both sides of the switch threshold and the clip
    assert (w > 3.0).any() and (w <= 1.0).any()


def test_switch_dr_limits_are_dm_and_dr():
    arrays = _problem(seed=1)
    dm = DM().estimate_policy_value(**arrays)
    dr = DR().estimate_policy_value(**arrays)
    assert SwitchDR(tau=0.0).estimate_policy_value(**arrays) == pytest.approx(dm, abs=1e-12)
    assert SwitchDR(tau=float("inf")).estimate_policy_value(**arrays) == pytest.approx(dr,
                                                                                        abs=1e-12)
    assert dm != pytest.approx(dr, abs=1e-6)


def test_on_policy_ips_is_the_mean_reward():
    rng = np.random.default_rng(2)
    n, n_actions = 300, 4
    pi = rng.dirichlet(np.ones(n_actions), size=n)
    action = np.array([rng.choice(n_actions, p=row) for row in pi])
    reward = rng.random(n)
    pscore = pi[np.arange(n), action]
    ad = pi[:, :, None]
    assert IPS().estimate_policy_value(reward=reward, action=action, pscore=pscore,
                                       action_dist=ad) == pytest.approx(reward.mean(), abs=1e-12)
    assert SNIPS().estimate_policy_value(reward=reward, action=action, pscore=pscore,
                                         action_dist=ad) == pytest.approx(reward.mean(), abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 50))
def test_snips_stays_within_the_reward_range(seed, n):
    arrays = _problem(seed=seed, n=n, n_actions=3, len_list=1)
    arrays.pop("position")
    arrays["reward"] = np.random.default_rng(seed).uniform(-2.0, 5.0, n)
    if not (arrays["action_dist"][np.arange(n), arrays["action"], 0] > 0).any():
        return
    v = SNIPS().estimate_policy_value(**{k: arrays[k] for k in ("reward", "action", "pscore",
                                                                 "action_dist")})
    assert arrays["reward"].min() - 1e-12 <= v <= arrays["reward"].max() + 1e-12


# ---------------------------------------------------------------------------------------------
# validation


def test_pscore_out_of_range_names_count_and_first_index():
    arrays = _problem(n=5, len_list=1)
    arrays.pop("position")
    arrays["pscore"] = np.array([0.5, 0.0, 0.2, 1.5, 0.3])
    with pytest.raises(DataError, match=r"pscore must be in \(0, 1\]; 2 of 5 values are not, "
                                        r"first at index 1 \(value 0\.0\)"):
        IPS().estimate_policy_value(**arrays)
    with pytest.raises(DataError, match=r"2 of 5 values are not, first at index 1"):
        BanditLog(action=np.zeros(5, dtype=int), reward=np.zeros(5), pscore=arrays["pscore"])
    with pytest.raises(DataError, match=r"1 of 2 values are not, first at index 0 \(value nan\)"):
        BanditLog(action=np.zeros(2, dtype=int), reward=np.zeros(2), pscore=[np.nan, 0.5])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.update(reward=a["reward"][:-1]), r"reward has 4 rounds but action_dist has 5"),
        (lambda a: a.update(action=a["action"][:3]), r"action has 3 rounds but action_dist has 5"),
        (lambda a: a.update(pscore=a["pscore"][:2]), r"pscore must be 1-D with 5 rounds; got "
                                                     r"shape \(2,\)"),
        (lambda a: a.update(position=a["position"][:4]), r"position has 4 rounds"),
        (lambda a: a.update(action_dist=a["action_dist"][:, :, 0]), r"action_dist must be 3-D"),
        (lambda a: a.update(estimated_rewards_by_reg_model=np.zeros((5, 2, 3))),
         r"estimated_rewards_by_reg_model has shape \(5, 2, 3\) but action_dist has \(5, 6, 3\)"),
        (lambda a: a.update(action=np.array([0, 1, 9, 2, 7])),
         r"action must be in \[0, 6\) \(n_actions of action_dist\); 2 values are not, first at "
         r"index 2 \(value 9\)"),
        (lambda a: a.update(position=np.array([0, 3, 1, 1, 1])),
         r"position must be in \[0, 3\) \(len_list of action_dist\); 1 values are not, first at "
         r"index 1"),
        (lambda a: a.update(position=None), r"position is required when action_dist has "
                                            r"len_list = 3 > 1"),
        (lambda a: a.update(action=a["action"].astype(float)), r"action must hold integers"),
        (lambda a: a.update(pscore=None), r"reward, action and pscore go together; missing "
                                          r"\['pscore'\]"),
        (lambda a: a["action_dist"].__setitem__((2, 0, 1), a["action_dist"][2, 0, 1] + 0.5),
         r"action_dist must sum to 1 over actions for every round and position; 1 \(round, "
         r"position\) pairs do not, first \(2, 1\)"),
    ],
)
def test_shape_and_range_errors_name_the_input(change, message):
    arrays = _problem(n=5)
    change(arrays)
    with pytest.raises(DataError, match=message):
        DR().estimate_policy_value(**arrays)


def test_estimator_without_its_inputs_says_what_it_needs():
    arrays = _problem(n=5)
    arrays.pop("estimated_rewards_by_reg_model")
    with pytest.raises(DataError, match=r"DR needs estimated_rewards_by_reg_model"):
        DR().estimate_policy_value(**arrays)
    with pytest.raises(DataError, match=r"IPS needs reward, action and pscore"):
        IPS().estimate_policy_value(action_dist=arrays["action_dist"],
                                    position=arrays["position"])


def test_parameter_and_name_errors():
    with pytest.raises(ConfigError, match=r"The 'tau' parameter of SwitchDR must be a float in "
                                          r"\[0, inf\]. Got -1.0 instead."):
        SwitchDR(tau=-1.0)
    with pytest.raises(ConfigError, match=r"The 'lambda_' parameter of IPS"):
        IPS(lambda_=float("nan"))
    with pytest.raises(ConfigError, match=r"Unknown estimator 'ipw'; known estimators: ips, "
                                          r"snips, dm, dr, sndr, switch-dr"):
        make_estimator("ipw")
    with pytest.raises(ConfigError, match=r"alpha must be a float in \(0, 1\). Got 1.5"):
        bootstrap_interval(np.ones(3), alpha=1.5)
    with pytest.raises(ConfigError, match=r"random_state must be an int seed or a "
                                          r"numpy.random.Generator. Got None"):
        bootstrap_interval(np.ones(3), random_state=None)


def test_empty_log_is_a_clear_error():
    empty = dict(reward=np.zeros(0), action=np.zeros(0, dtype=int), pscore=np.zeros(0),
                 action_dist=np.zeros((0, 3, 1)))
    with pytest.raises(DataError, match=r"empty"):
        IPS().estimate_policy_value(**empty)
    with pytest.raises(DataError, match=r"empty"):
        SNIPS().estimate_interval(**empty, n_bootstrap_samples=10)


# ---------------------------------------------------------------------------------------------
# mergeable statistics


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_two_merged_halves_equal_the_whole(name):
    arrays = _problem(seed=3, n=1001)
    est = make_estimator(name)
    half = 437
    first = {k: v[:half] for k, v in arrays.items()}
    second = {k: v[half:] for k, v in arrays.items()}
    merged = merge(est.partial(**first), est.partial(**second))
    whole = est.partial(**arrays)
    assert set(merged) == set(whole)
    for k in whole:
        assert merged[k] == pytest.approx(whole[k], rel=1e-12, abs=1e-12)
    assert est.value(merged) == pytest.approx(est.estimate_policy_value(**arrays), abs=1e-12)


def test_merge_rejects_statistics_of_different_estimators():
    arrays = _problem(n=10)
    with pytest.raises(ValueError, match=r"different keys"):
        merge(IPS().partial(**arrays), SNIPS().partial(**arrays))


# ---------------------------------------------------------------------------------------------
# bootstrap and the high-level API


def test_bootstrap_is_seeded_and_covers_the_mean():
    samples = np.random.default_rng(4).normal(1.0, 2.0, 2000)
    a = bootstrap_interval(samples, n_bootstrap_samples=500, random_state=7)
    b = bootstrap_interval(samples, n_bootstrap_samples=500, random_state=7)
    c = bootstrap_interval(samples, n_bootstrap_samples=500, random_state=np.random.default_rng(7))
    assert a == b
    assert a != c
    se = samples.std() / np.sqrt(samples.size)
    for iv in (a, c):
        assert iv.low < samples.mean() < iv.high
        # a 95% percentile interval of the mean is about 2 * 1.96 standard errors wide
        assert 3.3 * se < iv.high - iv.low < 4.6 * se


def test_estimate_returns_every_supported_estimator_with_intervals():
    arrays = _problem(seed=5, n=800)
    log = BanditLog(action=arrays["action"], reward=arrays["reward"], pscore=arrays["pscore"],
                    position=arrays["position"])
    out = estimate(log, arrays["action_dist"], arrays["estimated_rewards_by_reg_model"],
                   n_bootstrap_samples=300, random_state=1)
    assert list(out) == ["ips", "snips", "dm", "dr", "sndr", "switch-dr"]
    for name, est in out.items():
        assert isinstance(est, Estimate)
        assert est.value == pytest.approx(
            make_estimator(name).estimate_policy_value(**arrays), abs=1e-12)
        assert est.ci_low < est.value < est.ci_high
    only_ips = estimate(log, arrays["action_dist"], estimators=[IPS(lambda_=3.0), "snips"],
                        n_bootstrap_samples=50)
    assert list(only_ips) == ["ips(lambda=3)", "snips"]


def test_round_terms_from_shards_equal_terms_of_the_whole():
    arrays = _problem(seed=6, n=100)
    whole = RoundTerms.compute(**arrays)
    part = RoundTerms.compute(**{k: v[20:50] for k, v in arrays.items()})
    np.testing.assert_array_equal(whole.slice(20, 50).weight, part.weight)
    np.testing.assert_array_equal(whole.slice(20, 50).q_target, part.q_target)


# ---------------------------------------------------------------------------------------------
# factored estimator for plans


def _additive_plan_problem(reps: int, n: int, seed: int):
    """S strategies with L depth levels each; reward additive over strategies.

    Contexts come from K types. Logging and target choose each strategy's depth independently
    given the context, so the whole-plan propensity is the product of marginals.
    """
    ss = np.random.SeedSequence(seed)
    world_rng, data_rng = (np.random.default_rng(s) for s in ss.spawn(2))
    K, S, L = 5, 3, 4
    q = world_rng.uniform(0.0, 0.6, (K, S, L))  # E[r_s | context k, depth level d]
    mu = world_rng.dirichlet(np.full(L, 4.0), size=(K, S))  # logging marginals
    pi = world_rng.dirichlet(np.full(L, 0.7), size=(K, S))  # target marginals
    truth = float(np.mean(np.sum(pi * q, axis=(1, 2))))

    k = data_rng.integers(0, K, (reps, n))
    cum = np.cumsum(mu[k], axis=-1)  # [reps, n, S, L]
    u = data_rng.random((reps, n, S, 1))
    depth = np.minimum((u > cum).sum(axis=-1), L - 1)  # [reps, n, S]
    take = lambda arr: np.take_along_axis(arr[k], depth[..., None], axis=-1)[..., 0]  # noqa: E731
    mu_logged, pi_logged, q_logged = take(mu), take(pi), take(q)
    r_s = (data_rng.random((reps, n, S)) < q_logged).astype(float)
    return dict(k=k, depth=depth, mu_logged=mu_logged, pi=pi, pi_logged=pi_logged, r_s=r_s,
                truth=truth)


def test_factored_ips_is_unbiased_and_beats_whole_plan_ips_on_an_additive_problem():
    reps, n = 300, 400
    p = _additive_plan_problem(reps, n, seed=11)
    fac, whole = np.empty(reps), np.empty(reps)
    est = FactoredIPS()
    for i in range(reps):
        target_marginals = p["pi"][p["k"][i]]  # [n, S, L]
        fac[i] = est.estimate_policy_value(p["r_s"][i], p["depth"][i], p["mu_logged"][i],
                                           target_marginals)
        # whole-plan IPS: weight = product of marginals' ratio, reward = sum over strategies
        terms = RoundTerms(reward=p["r_s"][i].sum(axis=1),
                           weight=np.prod(p["pi_logged"][i] / p["mu_logged"][i], axis=1))
        whole[i] = IPS().value_from_terms(terms)
    se = fac.std(ddof=1) / np.sqrt(reps)
    assert abs(fac.mean() - p["truth"]) < 3 * se
    assert abs(whole.mean() - p["truth"]) < 3 * whole.std(ddof=1) / np.sqrt(reps)
    assert fac.var() < 0.5 * whole.var()
    # whole-plan propensities are products of marginals: far smaller than any one marginal
    assert np.median(np.prod(p["mu_logged"], axis=-1)) < 0.5 * np.median(p["mu_logged"])


def test_factored_merge_interval_and_plan_arrays():
    p = _additive_plan_problem(1, 600, seed=12)
    args = (p["r_s"][0], p["depth"][0], p["mu_logged"][0], p["pi"][p["k"][0]])
    for est in (FactoredIPS(), FactoredIPS(self_normalized=True)):
        whole = est.partial(*args)
        merged = merge(est.partial(*(a[:250] for a in args)),
                       est.partial(*(a[250:] for a in args)))
        assert est.value(merged) == pytest.approx(est.value(whole), abs=1e-12)
        iv = est.estimate_interval(*args, n_bootstrap_samples=300, random_state=2)
        assert iv.low < est.value(whole) < iv.high
    w = p["pi_logged"][0] / p["mu_logged"][0]
    assert FactoredIPS().estimate_policy_value(*args) == pytest.approx(
        np.sum(np.mean(w * p["r_s"][0], axis=0)), abs=1e-12)
    assert FactoredIPS(self_normalized=True).estimate_policy_value(*args) == pytest.approx(
        np.sum(np.sum(w * p["r_s"][0], axis=0) / np.sum(w, axis=0)), abs=1e-12)

    menus = {"bm25": (0, 10, 50), "dense": (0, 20)}
    plans = [Plan(("bm25", "dense"), (50, 0), 0.1, (0.5, 0.2)),
             Plan(("bm25", "dense"), (10, 20), 0.3, (0.25, 0.8))]
    names, depth_index, pscore = plan_arrays(plans, menus)
    assert names == ("bm25", "dense")
    np.testing.assert_array_equal(depth_index, [[2, 0], [1, 1]])
    np.testing.assert_array_equal(pscore, [[0.5, 0.2], [0.25, 0.8]])
    with pytest.raises(DataError, match=r"Plan 1: depth 20 of strategy 'dense' is not on its "
                                        r"menu \[0, 30\]"):
        plan_arrays(plans, {"bm25": (0, 10, 50), "dense": (0, 30)})


def test_factored_validation_names_the_input():
    n, S, L = 4, 2, 3
    tm = np.full((n, S, L), 1 / L)
    di = np.zeros((n, S), dtype=int)
    ps = np.full((n, S), 0.5)
    r = np.ones((n, S))
    with pytest.raises(DataError, match=r"strategy_pscore must be in \(0, 1\]; 1 of 8 values are "
                                        r"not, first at index \(1, 0\)"):
        FactoredIPS().estimate_policy_value(r, di, np.where(np.arange(n)[:, None] == 1,
                                                            [[1.2, 0.5]], ps), tm)
    with pytest.raises(DataError, match=r"depth_index must be in \[0, 3\)"):
        FactoredIPS().estimate_policy_value(r, di + 3, ps, tm)
    with pytest.raises(DataError, match=r"strategy_reward must have shape \(4, 2\)"):
        FactoredIPS().estimate_policy_value(r[:, :1], di, ps, tm)
    with pytest.raises(DataError, match=r"depth_index must have shape \(4, 2\)"):
        FactoredIPS().estimate_policy_value(r, di[:3], ps, tm)
