"""From per-round terms to estimates: the estimator table, per-round columns whose sums give
each estimate (so chunks and shards merge), and intervals by either bootstrap.

Two bootstraps (``method``):

- ``obp``: Open Bandit Pipeline's nonparametric bootstrap of the per-round terms, drawn exactly
  as OBP draws them for an integer seed (:func:`ltrr.offline.bootstrap.bootstrap_interval`), one
  stream per estimator. Needs the whole log's per-round terms in one place.
- ``poisson``: every round weighted by an independent Poisson(1) count per replicate; each
  replicate's column sums add up over chunks, so it streams and shards, and the weights of one
  chunk serve every estimator and target at once
  (:func:`ltrr.offline.bootstrap.poisson_replicate_sums`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ltrr.errors import ConfigError, DataError
from ltrr.offline.bootstrap import percentile_interval
from ltrr.offline.estimators import (
    DM,
    DR,
    IPS,
    SNDR,
    SNIPS,
    FactoredIPS,
    OffPolicyEstimator,
    RoundTerms,
    SwitchDR,
)

ESTIMATOR_NAMES = ("ips", "snips", "dm", "dr", "sndr", "switch-dr", "factored-ips")
BOOTSTRAP_METHODS = ("poisson", "obp")
MODEL_BASED = frozenset({"dm", "dr", "sndr", "switch-dr"})
#: every estimator of the table: the OBP-style ones and the factored (per-strategy) IPS
Estimator = OffPolicyEstimator | FactoredIPS


def make_estimators(names: Sequence[str]) -> list[Estimator]:
    table: dict[str, Estimator] = {"ips": IPS(), "snips": SNIPS(), "dm": DM(), "dr": DR(), "sndr": SNDR(),
             "switch-dr": SwitchDR(), "factored-ips": FactoredIPS(), "factored-snips": FactoredIPS(True)}
    out: list[Estimator] = []
    for name in names:
        if name not in table:
            raise ConfigError(f"Unknown estimator {name!r}; known: {', '.join(table)}")
        out.append(table[name])
    return out


def check_bootstrap_method(method: str) -> str:
    if method not in BOOTSTRAP_METHODS:
        raise ConfigError(f"The 'bootstrap_method' parameter must be one of {', '.join(BOOTSTRAP_METHODS)}. "
                          f"Got {method!r} instead.")
    return method


def columns(est: OffPolicyEstimator, t: RoundTerms) -> dict[str, np.ndarray]:
    """Per-round columns whose sums are ``est.partial_terms(t)``."""
    one = np.ones(t.n_rounds)
    if isinstance(est, IPS):
        return {"n": one, "sum_wr": est.round_rewards(t)}
    if isinstance(est, SNIPS):
        r, w = t.require(est.label, "reward", "weight")
        return {"n": one, "sum_wr": r * w, "sum_w": w}
    if isinstance(est, DM):
        (q_target,) = t.require(est.label, "q_target")
        return {"n": one, "sum_q": q_target}
    if isinstance(est, DR | SwitchDR):
        (q_target,) = t.require(est.label, "q_target")
        return {"n": one, "sum_q": q_target, "sum_wres": est._correction(t)}
    if isinstance(est, SNDR):
        r, w, q_factual, q_target = t.require(est.label, "reward", "weight", "q_factual", "q_target")
        return {"n": one, "sum_q": q_target, "sum_wres": w * (r - q_factual), "sum_w": w}
    raise ConfigError(f"no column form for estimator {est.label!r}")


def shared_key(est: Estimator, key: str) -> str:
    """A name for the quantity behind column ``key`` of ``est``, equal across estimators that
    hold the same per-round quantity (so the bootstrap weighs each distinct column once)."""
    if key == "n":
        return "n"
    if key == "sum_w":
        return "w"
    if key == "sum_q":
        return "q"
    if isinstance(est, IPS | SNIPS) and key == "sum_wr":
        lam = getattr(est, "lambda_", float("inf"))
        return "wr" if np.isinf(lam) else f"wr/clip={lam!r}"
    if key == "sum_wres":
        if isinstance(est, SwitchDR):
            return f"wres/switch={est.tau!r}"
        lam = getattr(est, "lambda_", float("inf"))
        return "wres" if np.isinf(lam) else f"wres/clip={lam!r}"
    return f"{est.label}/{key}"


def safe_value(est: Estimator, keys: Sequence[str], sums: np.ndarray) -> float:
    """An estimate from column sums; NaN when it has no weight (e.g. a bootstrap replicate)."""
    try:
        return est.value(dict(zip(keys, np.asarray(sums).tolist(), strict=True)))
    except DataError:
        return float("nan")


def entry_from_sums(est: Estimator, keys: Sequence[str], sums: np.ndarray, boot: np.ndarray | None,
                    alpha: float) -> dict[str, Any]:
    """``{"value", "ci_low", "ci_high", "status"}`` from merged column sums (Poisson replicates)."""
    try:
        value = est.value(dict(zip(keys, np.asarray(sums).tolist(), strict=True)))
    except DataError as exc:
        return {"value": None, "ci_low": None, "ci_high": None, "status": "unavailable", "reason": str(exc)}
    row: dict[str, Any] = {"value": value, "status": "ok"}
    if boot is not None:
        reps = np.array([safe_value(est, keys, b) for b in boot])
        row["ci_low"], row["ci_high"] = percentile_interval(reps, alpha)
    return row


def obp_entry(est: OffPolicyEstimator, terms: RoundTerms, n_boot: int, alpha: float,
              seed: int) -> dict[str, Any]:
    """Value and OBP's bootstrap interval from the whole log's per-round terms."""
    try:
        value = est.value_from_terms(terms)
    except DataError as exc:
        return {"value": None, "ci_low": None, "ci_high": None, "status": "unavailable", "reason": str(exc)}
    row: dict[str, Any] = {"value": value, "status": "ok"}
    if n_boot:
        ci = est.interval_from_terms(terms, alpha, n_boot, int(seed))
        row.update(ci_low=ci.low, ci_high=ci.high, boot_mean=ci.mean)
    return row


def bootstrap_info(method: str, n_boot: int, seed: int) -> Mapping[str, Any]:
    text = ("Open Bandit Pipeline's nonparametric bootstrap of per-round terms (legacy RandomState(seed), "
            "one stream per estimator)" if method == "obp" else
            "Poisson(1) bootstrap, streamed in blocks of replicates and seeded per log chunk")
    return {"method": method, "replicates": int(n_boot), "seed": int(seed), "description": text}
