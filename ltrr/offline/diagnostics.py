"""Diagnostics of importance weights, shown beside every off-policy estimate.

Per target policy: effective sample size ``(sum w)^2 / sum w^2``, the largest and mean weight,
the rounds whose weight exceeds a clip, and the *support* problem: the share of the target's
mass on actions the logger never played, on which no reweighting can say anything. Warnings:
a deterministic logger (every propensity is 1), an effective sample size below a threshold,
weights above the clip, unsupported mass.

A deterministic log makes the IPS family (IPS, SNIPS, DR, SNDR, switch-DR, factored IPS) *not
identifiable* for any target that differs from the logger: the output carries that status and
no number. The direct method still gives a number, which is the reward model's extrapolation.

The statistics are sums, so shards merge them (:func:`merge_weight_sums`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ltrr.errors import ConfigError

IPS_FAMILY = frozenset({"ips", "snips", "dr", "sndr", "switch-dr", "factored-ips", "factored-snips"})


@dataclass(frozen=True)
class Thresholds:
    """When a diagnostic becomes a warning."""

    #: warn when ESS / rounds falls below this
    min_ess_fraction: float = 0.01
    #: warn when an importance weight exceeds this
    weight_clip: float = 100.0
    #: warn when more than this share of the target's mass is on never-played actions
    max_unsupported: float = 0.01

    def __post_init__(self) -> None:
        for name in ("min_ess_fraction", "max_unsupported"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"The {name!r} threshold must be a float in [0, 1]. Got {v!r} instead.")
        if not self.weight_clip > 0:
            raise ConfigError(f"The 'weight_clip' threshold must be a float in (0, inf). Got {self.weight_clip!r} instead.")


def weight_sums(weight: np.ndarray, pscore: np.ndarray, unsupported: np.ndarray, clip: float) -> dict[str, float]:
    """Mergeable sums over one chunk: weights, propensities equal to 1, unsupported mass."""
    w = np.asarray(weight, dtype=np.float64)
    return {"n": float(w.size), "sum_w": float(w.sum()), "sum_w2": float((w * w).sum()),
            "max_w": float(w.max()) if w.size else 0.0, "n_above_clip": float((w > clip).sum()),
            "sum_unsupported": float(np.sum(unsupported)), "n_pscore_one": float((pscore >= 1.0).sum()),
            "n_w_not_one": float((w != 1.0).sum())}


def merge_weight_sums(a: Mapping[str, float] | None, b: Mapping[str, float]) -> dict[str, float]:
    if a is None:
        return dict(b)
    return {k: (max(a[k], b[k]) if k == "max_w" else a[k] + b[k]) for k in a}


def diagnose(sums: Mapping[str, float], thresholds: Thresholds) -> dict[str, Any]:
    """The diagnostics and warnings of one target from its merged sums."""
    n = sums["n"]
    ess = sums["sum_w"] ** 2 / sums["sum_w2"] if sums["sum_w2"] > 0 else 0.0
    deterministic = n > 0 and sums["n_pscore_one"] == n
    unsupported = sums["sum_unsupported"] / n if n else 0.0
    out: dict[str, Any] = {
        "effective_sample_size": ess, "ess_fraction": ess / n if n else 0.0,
        "max_weight": sums["max_w"], "mean_weight": sums["sum_w"] / n if n else 0.0,
        "rounds_above_clip": int(sums["n_above_clip"]), "weight_clip": thresholds.weight_clip,
        "unsupported_mass": unsupported, "deterministic_logger": bool(deterministic),
        # on a deterministic log a target is identifiable only where it is the logger itself
        "identifiable": not (deterministic and sums["n_w_not_one"] > 0),
    }
    warnings = []
    if deterministic:
        warnings.append("deterministic logger: every logged propensity is 1, so the log holds no "
                        "exploration; IPS-family estimates of any other policy are not identifiable")
    if n and ess / n < thresholds.min_ess_fraction:
        warnings.append(f"effective sample size {ess:.1f} is {100 * ess / n:.2g}% of {int(n)} rounds "
                        f"(threshold {100 * thresholds.min_ess_fraction:g}%): the estimate rests on few rounds")
    if sums["n_above_clip"] > 0:
        warnings.append(f"{int(sums['n_above_clip'])} rounds have importance weights above {thresholds.weight_clip:g} "
                        f"(max {sums['max_w']:.4g})")
    if unsupported > thresholds.max_unsupported:
        warnings.append(f"{100 * unsupported:.3g}% of the target's mass is on actions the logger never played "
                        "(no support): IPS-family estimators cannot see their reward")
    out["warnings"] = warnings
    return out


def not_identifiable(label: str) -> dict[str, Any]:
    return {"value": None, "ci_low": None, "ci_high": None, "status": "not identifiable",
            "reason": f"{label} reweights logged rewards, but the logger was deterministic and the "
                      "target differs from it"}


def unavailable(reason: str) -> dict[str, Any]:
    return {"value": None, "ci_low": None, "ci_high": None, "status": "unavailable", "reason": reason}


def apply_identifiability(estimates: dict[str, dict[str, Any]], diag: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Replace IPS-family numbers by "not identifiable" when the diagnostics say so."""
    if diag["identifiable"]:
        return estimates
    return {k: (not_identifiable(k) if k.split("(")[0] in IPS_FAMILY else v) for k, v in estimates.items()}
