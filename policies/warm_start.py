"""Warm start from full-information replay.

Strategies are deterministic, so for a logged query with a click we know, for *every* plan in the
menu, whether its candidates would have contained the clicked item. ``plan_rewards[i, a]`` is that
counterfactual reward (1 if plan ``a`` would have found the click, minus the cost of its
candidates). Pre-training on it is cost-sensitive supervised learning: each policy type learns the
whole reward row at once (ridge policies update every plan's model; the factored policy updates
every (strategy, depth) model; VW learns each plan's cost, see its docstring). These are
full-information numbers, unlike the bandit feedback the policy receives online.
"""

from __future__ import annotations

import numpy as np

from policies.base import Policy


def warm_start(policy: Policy, X: np.ndarray, plan_rewards: np.ndarray,
               depth_rewards: np.ndarray | None = None) -> None:
    """Pre-train ``policy`` on logged contexts ``X`` (``[n, d]``) and full-information rewards.

    Parameters
    ----------
    policy
        Any registered policy; it is updated in place (``X`` and the rewards are not modified).
    X
        Context features of the logged queries, ``float[n, n_features]``.
    plan_rewards
        ``float[n, n_plans]``: the reward every menu plan would have earned on query ``i``.
    depth_rewards
        Optional ``float[n, n_strategies, n_options]`` for the factored policy: strategy ``s`` at
        its ``j``-th depth option (see ``FactoredPolicy.depth_options``). When omitted, the
        factored policy reads them off the single-strategy plans of the menu.
    """
    X = np.array(X, dtype=np.float64)
    R = np.array(plan_rewards, dtype=np.float64)
    n_plans = policy.menu.n_actions
    if X.ndim != 2 or X.shape[1] != policy.n_features:
        raise ValueError(f"warm start contexts have shape {X.shape}, expected (n, {policy.n_features})")
    if R.shape != (X.shape[0], n_plans):
        raise ValueError(f"plan_rewards has shape {R.shape}, expected ({X.shape[0]}, {n_plans})")
    bad = ~np.isfinite(X)
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(f"Context feature {policy.feature_names[j]!r} of warm-start row {i} is {X[i, j]} "
                         "(NaN or inf is not allowed).")
    lo, hi = policy.reward_bounds
    for name, arr in (("plan_rewards", R), ("depth_rewards", depth_rewards)):
        if arr is None:
            continue
        arr = np.asarray(arr, dtype=np.float64)
        out = ~np.isfinite(arr) | (arr < lo) | (arr > hi)
        if out.any():
            idx = tuple(int(v) for v in np.argwhere(out)[0])
            raise ValueError(f"{name}{list(idx)} = {float(arr[idx])!r} is outside the configured range [{lo}, {hi}].")
    if depth_rewards is not None:
        depth_rewards = np.array(depth_rewards, dtype=np.float64)
    if X.shape[0] == 0:
        return
    policy._warm_start(X, R, depth_rewards)
    policy.n_updates_ += X.shape[0]
