"""Off-policy evaluation of foreign (action) logs: OBD CSVs, DSJSON, mapped tables.

The log is read into memory (:class:`~ltrr.offline.formats.ActionLog`); each target gives its
distribution over actions for every round (an action-distribution file or a VW model); the
reward model is cross-fitted (:mod:`ltrr.offline.rewardmodel`). Everything is then OBP's
arithmetic on per-round terms, at each round's logged position, so with the same inputs the
numbers equal ``obp.ope.OffPolicyEvaluation``'s (tested to 1e-9 on the Open Bandit Dataset).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ltrr.errors import ConfigError
from ltrr.offline.bootstrap import CHUNK_ROWS, poisson_replicate_sums
from ltrr.offline.diagnostics import (
    Thresholds,
    apply_identifiability,
    diagnose,
    unavailable,
    weight_sums,
)
from ltrr.offline.estimators import FactoredIPS, RoundTerms
from ltrr.offline.formats.actionlog import ActionLog
from ltrr.offline.rewardmodel import RewardModelSpec, fit_predict
from ltrr.offline.targets import TargetSpec, load_action_dist, vw_distribution
from ltrr.offline.terms import (
    MODEL_BASED,
    bootstrap_info,
    columns,
    entry_from_sums,
    make_estimators,
    obp_entry,
)


def target_distribution(spec: TargetSpec, log: ActionLog) -> np.ndarray:
    if spec.kind == "dist":
        return load_action_dist(spec.source, log)
    if spec.kind == "vw":
        return vw_distribution(spec.source, log)
    raise ConfigError(f"target {spec.name!r}: an ltrr policy ({spec.source}) plans over retrieval "
                      f"strategies and cannot act on a {log.format} log's actions; give the target as "
                      "--target-dist FILE (rounds x actions [x positions]) or, for DSJSON, --vw-model FILE")


def unsupported_mass(log: ActionLog, pi_pos: np.ndarray) -> np.ndarray:
    """Per round: the target's mass on actions the logger never played (at that position), or,
    when the log holds the logger's distribution, on actions it gave probability 0 there."""
    if log.logged_pmf is not None:
        return (pi_pos * (log.logged_pmf <= 0.0)).sum(axis=1)
    played = np.zeros((log.len_list, log.n_actions), dtype=bool)
    played[log.position, log.action] = True
    return (pi_pos * ~played[log.position]).sum(axis=1)


def evaluate_action_log(log: ActionLog, targets: Sequence[TargetSpec], *, estimators: Sequence[str],
                        reward_model: RewardModelSpec, n_bootstrap: int, bootstrap_method: str,
                        seed: int, alpha: float, thresholds: Thresholds) -> dict[str, Any]:
    """Every target's estimates, intervals and diagnostics (the result of ``ltrr ope``)."""
    n = len(log)
    rows = np.arange(n)
    ests = make_estimators(estimators)
    need_model = any(e.label in MODEL_BASED for e in ests) and reward_model.kind != "none"
    q = fit_predict(log, reward_model) if need_model else None
    result: dict[str, Any] = {
        "log": {"path": log.path, "format": log.format, "records": n + log.skipped, "valid": n,
                "skipped": log.skipped, "problems": {}, "examples": {}},
        "rounds": n, "logged_value": float(log.reward.mean()), "alpha": alpha,
        "bootstrap": bootstrap_info(bootstrap_method, n_bootstrap, seed),
        "reward_model": reward_model.describe(log.reward) if need_model else {"kind": "none"},
        "n_actions": log.n_actions, "len_list": log.len_list, "policies": {}}
    for spec in targets:
        dist = target_distribution(spec, log)
        pi_pos = dist[rows, :, log.position]
        w = pi_pos[rows, log.action] / log.pscore
        terms = RoundTerms(reward=log.reward, weight=w,
                           q_factual=None if q is None else q[rows, log.action],
                           q_target=None if q is None else np.einsum("ij,ij->i", pi_pos, q))
        diag = diagnose(weight_sums(w, log.pscore, unsupported_mass(log, pi_pos), thresholds.weight_clip),
                        thresholds)
        estimates: dict[str, dict[str, Any]] = {}
        usable = []
        for est in ests:
            if isinstance(est, FactoredIPS):
                estimates[est.label] = unavailable("factored IPS needs per-strategy plans and rewards (ltrr logs)")
            elif est.label in MODEL_BASED and q is None:
                estimates[est.label] = unavailable(f"{est.label} needs a reward model (--reward-model none)")
            else:
                usable.append(est)
        if bootstrap_method == "obp":
            for est in usable:
                estimates[est.label] = obp_entry(est, terms, n_bootstrap, alpha, seed)
        else:
            cols = [columns(est, terms) for est in usable]
            keys = [list(c) for c in cols]
            C = np.concatenate([np.stack(list(c.values()), axis=1) for c in cols], axis=1) if cols else np.zeros((n, 0))
            sums = C.sum(axis=0)
            boot = None
            if n_bootstrap:
                boot = np.zeros((n_bootstrap, C.shape[1]))
                for j, lo in enumerate(range(0, n, CHUNK_ROWS)):
                    boot += poisson_replicate_sums(C[lo: lo + CHUNK_ROWS], n_bootstrap, seed, (j, 0))
            at = 0
            for est, k in zip(usable, keys, strict=True):
                sl = slice(at, at + len(k))
                estimates[est.label] = entry_from_sums(est, k, sums[sl], None if boot is None else boot[:, sl], alpha)
                at += len(k)
        estimates = {e.label: estimates[e.label] for e in ests}
        result["policies"][spec.name] = {"source": spec.source, "kind": spec.kind,
                                         "estimates": apply_identifiability(estimates, diag),
                                         "diagnostics": diag}
    return result
