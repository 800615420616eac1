"""Parity with Open Bandit Pipeline 0.4.1 on the Open Bandit Dataset sample.

Logger: the uniform random policy of ``obd/random/all`` (10,000 rounds, 80 items, 3 positions).
Targets: a deterministic ranking by user-item affinity plus a seeded item prior, a softmax over
the same scores, and an epsilon-mixture of the two (its importance weights fall on both sides of
switch-DR's threshold). Reward model: a logistic regression of clicks on user features, item,
position and affinity, fitted on a seeded half of the log. OBP's own dataset loader breaks on
pandas 2, so the CSV is read here directly.

obp is a test-time reference only (``dev`` extra); without it this module is skipped with that
reason, never silently.
"""

from __future__ import annotations

import numpy as np

# the parity reference (obp 0.4.1) and what it reads with: dev dependencies installed by
# `make test`; a missing one fails the suite rather than skipping the comparison
import obp.ope as obp_ope  # noqa: E402
import pandas as pd  # noqa: E402
import pytest
import sklearn.linear_model as linear_model  # noqa: E402

from ltrr.config import SHARED_DATA_DIR
from ltrr.offline.estimators import (
    DM,
    DR,
    IPS,
    SNDR,
    SNIPS,
    BanditLog,
    SwitchDR,
    estimate,
    merge,
)

OBD = SHARED_DATA_DIR / "obd/random/all/all.csv"
if not OBD.exists():
    pytest.skip(f"Open Bandit Dataset sample not found at {OBD}", allow_module_level=True)

N_ITEMS, LEN_LIST = 80, 3
SEED = 20240611


@pytest.fixture(scope="module")
def obd():
    df = pd.read_csv(OBD, index_col=0)
    action = df["item_id"].to_numpy(np.int64)
    position = df["position"].to_numpy(np.int64) - 1  # the CSV counts positions from 1
    reward = df["click"].to_numpy(np.float64)
    pscore = df["propensity_score"].to_numpy(np.float64)
    affinity = df[[f"user-item_affinity_{a}" for a in range(N_ITEMS)]].to_numpy(np.float64)
    users = np.concatenate(
        [pd.get_dummies(df[f"user_feature_{j}"]).to_numpy(np.float64) for j in range(4)], axis=1
    )
    return dict(action=action, position=position, reward=reward, pscore=pscore,
                affinity=affinity, users=users)


@pytest.fixture(scope="module")
def reward_model(obd):
    """q_hat[n, 80, 3] from a logistic regression fitted on a seeded half of the log."""
    n = obd["action"].shape[0]
    rng = np.random.default_rng(SEED)
    train = rng.permutation(n)[: n // 2]
    item = np.eye(N_ITEMS)[obd["action"]]
    pos = np.eye(LEN_LIST)[obd["position"]]
    aff = obd["affinity"][np.arange(n), obd["action"]][:, None]
    X = np.concatenate([obd["users"], item, pos, aff], axis=1)
    model = linear_model.LogisticRegression(C=1.0, max_iter=2000)
    model.fit(X[train], obd["reward"][train])
    coef = model.coef_[0]
    n_u = obd["users"].shape[1]
    c_user, c_item = coef[:n_u], coef[n_u : n_u + N_ITEMS]
    c_pos, c_aff = coef[n_u + N_ITEMS : n_u + N_ITEMS + LEN_LIST], coef[-1]
    logit = (model.intercept_[0] + (obd["users"] @ c_user)[:, None, None]
             + c_item[None, :, None] + c_pos[None, None, :]
             + c_aff * obd["affinity"][:, :, None])
    return 1.0 / (1.0 + np.exp(-logit))


@pytest.fixture(scope="module")
def targets(obd):
    n = obd["action"].shape[0]
    prior = np.random.default_rng(SEED + 1).normal(0.0, 1.0, N_ITEMS)
    score = obd["affinity"] + prior[None, :]
    # deterministic: the k-th best item by score at position k
    ranked = np.argsort(-score, axis=1, kind="stable")[:, :LEN_LIST]
    det = np.zeros((n, N_ITEMS, LEN_LIST))
    for k in range(LEN_LIST):
        det[np.arange(n), ranked[:, k], k] = 1.0
    z = 2.0 * score
    soft = np.exp(z - z.max(axis=1, keepdims=True))
    soft = np.repeat((soft / soft.sum(axis=1, keepdims=True))[:, :, None], LEN_LIST, axis=2)
    mixed = 0.7 * det + 0.3 / N_ITEMS
    return {"deterministic": det, "softmax": soft, "epsilon-mixture": mixed}


def _pairs():
    return [
        (IPS(), obp_ope.InverseProbabilityWeighting(), False),
        (SNIPS(), obp_ope.SelfNormalizedInverseProbabilityWeighting(), False),
        (DM(), obp_ope.DirectMethod(), True),
        (DR(), obp_ope.DoublyRobust(), True),
        (SNDR(), obp_ope.SelfNormalizedDoublyRobust(), True),
        (SwitchDR(), obp_ope.SwitchDoublyRobust(), True),
        (SwitchDR(tau=10.0), obp_ope.SwitchDoublyRobust(tau=10.0), True),
        (SwitchDR(tau=100.0), obp_ope.SwitchDoublyRobust(tau=100.0), True),
    ]


def _kwargs(obd, action_dist, q_hat, uses_model: bool, obp_dm: bool = False):
    kw = dict(action_dist=action_dist, position=obd["position"])
    if not obp_dm:  # OBP's DirectMethod takes no reward, action or pscore
        kw.update(reward=obd["reward"], action=obd["action"], pscore=obd["pscore"])
    if uses_model:
        kw["estimated_rewards_by_reg_model"] = q_hat
    return kw


@pytest.mark.parametrize("target", ["deterministic", "softmax", "epsilon-mixture"])
def test_point_estimates_equal_obp(obd, reward_model, targets, target):
    ad = targets[target]
    values = {}
    for ours, theirs, uses_model in _pairs():
        is_dm = isinstance(ours, DM)
        mine = ours.estimate_policy_value(**_kwargs(obd, ad, reward_model, uses_model))
        ref = theirs.estimate_policy_value(**_kwargs(obd, ad, reward_model, uses_model, is_dm))
        assert mine == pytest.approx(float(ref), abs=1e-9), ours.label
        values[ours.label] = mine
    # the comparison is not vacuous: the estimators disagree with one another
    assert len({round(v, 9) for v in values.values()}) >= 4, values
    assert values["dm"] > 0


@pytest.mark.parametrize("target", ["softmax", "epsilon-mixture"])
def test_bootstrap_intervals_equal_obp_with_the_same_seed(obd, reward_model, targets, target):
    ad = targets[target]
    for ours, theirs, uses_model in _pairs():
        is_dm = isinstance(ours, DM)
        mine = ours.estimate_interval(
            **_kwargs(obd, ad, reward_model, uses_model), alpha=0.1, n_bootstrap_samples=200,
            random_state=7,
        ).to_obp_dict()
        ref = theirs.estimate_interval(
            **_kwargs(obd, ad, reward_model, uses_model, is_dm), alpha=0.1,
            n_bootstrap_samples=200, random_state=7,
        )
        assert set(mine) == set(ref)
        for key in ref:
            assert mine[key] == pytest.approx(float(ref[key]), abs=1e-9), (ours.label, key)


def test_switch_threshold_splits_the_mixture_weights(obd, targets):
    ad = targets["epsilon-mixture"]
    w = ad[np.arange(ad.shape[0]), obd["action"], obd["position"]] / obd["pscore"]
    assert (w <= 1.0).any() and (w > 10.0).any()  # tau = 1 and 10 both switch some rounds


def test_high_level_estimate_and_sharded_sums_equal_obp(obd, reward_model, targets):
    ad = targets["softmax"]
    log = BanditLog(action=obd["action"], reward=obd["reward"], pscore=obd["pscore"],
                    position=obd["position"])
    out = estimate(log, ad, reward_model, n_bootstrap_samples=100, random_state=3, alpha=0.05)
    for ours, theirs, uses_model in _pairs()[:6]:
        is_dm = isinstance(ours, DM)
        kw = _kwargs(obd, ad, reward_model, uses_model, is_dm)
        assert out[ours.label].value == pytest.approx(
            float(theirs.estimate_policy_value(**kw)), abs=1e-9)
        ref = theirs.estimate_interval(**kw, n_bootstrap_samples=100, random_state=3)
        assert out[ours.label].ci_low == pytest.approx(float(ref["95.0% CI (lower)"]), abs=1e-9)
        assert out[ours.label].ci_high == pytest.approx(float(ref["95.0% CI (upper)"]), abs=1e-9)
        # four shards merged give OBP's number too
        full = _kwargs(obd, ad, reward_model, uses_model)
        bounds = [0, 2500, 5000, 7500, 10000]
        stats = None
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            part = ours.partial(**{k: v[lo:hi] for k, v in full.items()})
            stats = part if stats is None else merge(stats, part)
        assert ours.value(stats) == pytest.approx(float(theirs.estimate_policy_value(**kw)),
                                                  abs=1e-9)
