"""Off-policy evaluation of target policies from an ltrr-written click log.

Two passes over the log, each a sum over chunks (so shards can run in parallel, see
:mod:`ltrr.offline.shards`, and give the same numbers):

1. **reward model**: per logged plan, the ridge sufficient statistics ``X^T X``, ``X^T r`` and
   counts over the context features ``x``; pooled over all plans too (the fallback for plans
   never logged). Solved once: ``theta_p = (X_p^T X_p + lambda I)^{-1} X_p^T r_p``.
2. **estimation**: for every target, its distribution over its menu for each logged ``x``
   (``Policy.probabilities``), the importance weight of the logged plan, the reward model at
   the logged plan and under the target. Every estimator of :mod:`ltrr.offline.estimators`
   is a ratio of sums of per-round columns; we accumulate those column sums, and the same sums
   under Poisson(1) bootstrap weights (``B`` replicates), whose draws are seeded by
   ``(seed, chunk key)`` so they do not depend on how the log was sharded. The factored
   (per-strategy) estimator uses the logged per-strategy rewards and propensities.

Targets are given as a TOML engine config (its policy, untrained unless it has warm state) or a
saved engine or policy directory (a trained policy).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ltrr.errors import ConfigError, DataError
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
from ltrr.offline.logs import BanditBatch, LogReader, LogReport

ESTIMATOR_NAMES = ("ips", "snips", "dm", "dr", "sndr", "switch-dr", "factored-ips")
DEFAULT_RIDGE = 1.0
#: rows per Poisson-weight matrix (bounds the bootstrap's memory)
_BOOT_ROWS = 8192


# ----------------------------------------------------------------------------------------------
# targets


@dataclass(frozen=True)
class TargetSpec:
    """A target policy to evaluate: a display name and where it comes from (picklable)."""

    name: str
    source: str


def load_policy(source: str | os.PathLike):
    """A policy from a TOML engine config, a saved engine directory or a saved policy directory."""
    from ltrr import registry

    path = Path(source)
    if not path.exists():
        raise ConfigError(f"{path}: no such policy config or saved policy")
    if path.is_dir():
        manifest_path = path / "manifest.json"
        if not manifest_path.exists():
            raise ConfigError(f"{path}: not a saved engine or policy (no manifest.json)")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("type") == "engine":
            kind = manifest["config"]["policy"]["type"]
            return registry.get("policy", kind).load(path / "policy")
        return registry.get("policy", manifest["type"]).load(path)
    from ltrr.builder import build_policy
    from ltrr.config import load_config

    return build_policy(load_config(path))


def _cached_policy(source: str):
    """``load_policy`` cached per process (Dask workers load each target once), keyed by the
    source's modification time so a re-saved policy is reloaded."""
    path = Path(source)
    stamp = (path / "manifest.json") if path.is_dir() else path
    return _load_cached(str(source), stamp.stat().st_mtime_ns if stamp.exists() else 0)


@lru_cache(maxsize=16)
def _load_cached(source: str, _mtime_ns: int):
    return load_policy(source)


def target_specs(sources: Sequence[str]) -> list[TargetSpec]:
    """Names from file/directory names, made unique."""
    out, seen = [], set()
    for src in sources:
        name = Path(src).stem if Path(src).is_file() else Path(src).name
        base, i = name, 2
        while name in seen:
            name, i = f"{base}-{i}", i + 1
        seen.add(name)
        out.append(TargetSpec(name, str(src)))
    return out


def batch_probabilities(policy, X: np.ndarray) -> np.ndarray:
    """``float[n, n_plans]``: the policy's distribution for every row of ``X``.

    Closed forms for the fixed, epsilon-greedy and softmax policies (one matrix product; equal
    to their per-row ``probabilities``, tested); any other policy is asked row by row, once
    per distinct context.
    """
    X = np.asarray(X, dtype=np.float64)
    n, k = X.shape[0], policy.menu.n_actions
    kind = getattr(policy, "type_name", "")
    if n and X.shape[1] != policy.n_features:
        policy.probabilities(X[0])  # raises the policy's own message naming the expected shape
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any():
        policy.probabilities(X[int(np.flatnonzero(bad)[0])])  # names the offending feature
    if kind == "fixed":
        p = np.zeros((n, k))
        if policy.action >= 0:
            p[:, policy.action] = 1.0
        return p
    if kind == "epsilon_greedy":
        eps = float(policy.params.epsilon)
        p = np.full((n, k), eps / k)
        p[np.arange(n), np.argmax(X @ policy.arms.theta.T, axis=1)] += 1.0 - eps
        return p
    if kind == "softmax":
        z = (X @ policy.arms.theta.T) / float(policy.params.temperature)
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)
    uniq, inverse = np.unique(X, axis=0, return_inverse=True)
    rows = np.stack([policy.probabilities(u) for u in uniq]) if len(uniq) else np.zeros((0, k))
    return rows[inverse.ravel()]


# ----------------------------------------------------------------------------------------------
# pass 1: the reward model


def _unique_rows(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of a small non-negative int matrix and each row's index among them.

    Rows are packed into one int64 key (mixed radix), so this is a 1-D unique, much faster than
    ``np.unique(axis=0)`` for the few distinct plans of a log.
    """
    if a.size == 0:
        return a.reshape(0, a.shape[1] if a.ndim == 2 else 0), np.zeros(a.shape[0], dtype=np.int64)
    base = int(a.max()) + 1
    key = np.zeros(a.shape[0], dtype=np.int64)
    for s in range(a.shape[1]):
        key = key * base + a[:, s]
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return a[first], inverse.ravel()


def reward_model_partial(batch: BanditBatch) -> dict[str, Any]:
    """Ridge sufficient statistics per logged plan (keyed by its depths) and pooled."""
    x, r = batch.x, batch.reward
    plans, inverse = _unique_rows(batch.depths)
    per = {}
    for j, depths in enumerate(plans):
        m = inverse == j
        xm = x[m]
        per[",".join(map(str, depths.tolist()))] = (xm.T @ xm, xm.T @ r[m], int(m.sum()))
    return {"strategies": batch.strategies, "plans": per,
            "pooled": (x.T @ x, x.T @ r, len(batch))}


def merge_reward_model(a: dict[str, Any] | None, b: dict[str, Any]) -> dict[str, Any]:
    if a is None:
        return b
    if a["strategies"] != b["strategies"]:
        raise DataError(f"log shards disagree on the plan's strategies: {a['strategies']} vs {b['strategies']}")
    plans = dict(a["plans"])
    for key, (xx, xr, n) in b["plans"].items():
        if key in plans:
            px, pr, pn = plans[key]
            plans[key] = (px + xx, pr + xr, pn + n)
        else:
            plans[key] = (xx, xr, n)
    pa, pb = a["pooled"], b["pooled"]
    return {"strategies": a["strategies"], "plans": dict(sorted(plans.items())),
            "pooled": (pa[0] + pb[0], pa[1] + pb[1], pa[2] + pb[2])}


@dataclass(frozen=True)
class RewardModel:
    """Ridge regression of the reward on ``x``, one per logged plan, pooled as the fallback."""

    strategies: tuple[str, ...]
    thetas: dict[tuple[int, ...], np.ndarray]
    pooled: np.ndarray
    counts: dict[tuple[int, ...], int]

    @classmethod
    def solve(cls, stats: Mapping[str, Any], ridge: float = DEFAULT_RIDGE) -> RewardModel:
        def fit(xx, xr):
            return np.linalg.solve(xx + ridge * np.eye(xx.shape[0]), xr)

        thetas, counts = {}, {}
        for key, (xx, xr, n) in stats["plans"].items():
            depths = tuple(int(v) for v in key.split(","))
            thetas[depths] = fit(xx, xr)
            counts[depths] = int(n)
        return cls(tuple(stats["strategies"]), thetas, fit(*stats["pooled"][:2]), counts)

    def matrix(self, plans: np.ndarray) -> np.ndarray:
        """``float[n_plans, d]``: the model of each plan (pooled when never logged)."""
        uniq, inverse = _unique_rows(np.asarray(plans, dtype=np.int64))
        rows = np.stack([self.thetas.get(tuple(int(v) for v in p), self.pooled) for p in uniq])
        return rows[inverse]


# ----------------------------------------------------------------------------------------------
# pass 2: estimator columns


def _columns(est: OffPolicyEstimator, t: RoundTerms) -> dict[str, np.ndarray]:
    """Per-round columns whose sums are ``est.partial_terms(t)``."""
    one = np.ones(t.n_rounds)
    if isinstance(est, IPS):
        return {"n": one, "sum_wr": est.round_rewards(t)}
    if isinstance(est, SNIPS):
        return {"n": one, "sum_wr": t.reward * t.weight, "sum_w": t.weight}
    if isinstance(est, DM):
        return {"n": one, "sum_q": t.q_target}
    if isinstance(est, DR | SwitchDR):
        return {"n": one, "sum_q": t.q_target, "sum_wres": est._correction(t)}
    if isinstance(est, SNDR):
        return {"n": one, "sum_q": t.q_target, "sum_wres": t.weight * (t.reward - t.q_factual),
                "sum_w": t.weight}
    raise ConfigError(f"no column form for estimator {est.label!r}")


def make_estimators(names: Sequence[str]) -> list[OffPolicyEstimator | FactoredIPS]:
    out: list[OffPolicyEstimator | FactoredIPS] = []
    table = {"ips": IPS(), "snips": SNIPS(), "dm": DM(), "dr": DR(), "sndr": SNDR(),
             "switch-dr": SwitchDR(), "factored-ips": FactoredIPS(), "factored-snips": FactoredIPS(True)}
    for name in names:
        if name not in table:
            raise ConfigError(f"Unknown estimator {name!r}; known: {', '.join(table)}")
        out.append(table[name])
    return out


def _poisson_table() -> np.ndarray:
    """Poisson(1) quantiles of 65,536 equiprobable uint16 draws (fast, mergeable bootstrap weights)."""
    from scipy.stats import poisson

    u = (np.arange(65536) + 0.5) / 65536.0
    return poisson.ppf(u, 1.0).astype(np.float64)


_POISSON = None


def _boot_weights(seed: int, key: tuple[int, int], n_boot: int, n: int) -> np.ndarray:
    global _POISSON
    if _POISSON is None:
        _POISSON = _poisson_table()
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(key[0]), int(key[1])]))
    return _POISSON[rng.integers(0, 65536, size=(n_boot, n), dtype=np.uint16)]


@dataclass(frozen=True)
class Plan2Context:
    """What pass 2 needs besides the log: targets, the solved reward model, options."""

    targets: tuple[TargetSpec, ...]
    model: RewardModel
    estimators: tuple[str, ...]
    n_boot: int
    seed: int


def _factored_inputs(batch: BanditBatch, menu, P: np.ndarray):
    """Depth indices, per-strategy logged propensities and the target's marginals per depth."""
    n, S = batch.depths.shape
    opts = [sorted(set(menu.plans[:, s].tolist()) | {0}) for s in range(S)]
    width = max(len(o) for o in opts) + 1  # one extra slot: a logged depth the target never takes
    depth_index = np.empty((n, S), dtype=np.int64)
    marg = np.zeros((n, S, width))
    for s in range(S):
        o = np.asarray(opts[s])
        pos = np.searchsorted(o, batch.depths[:, s])
        found = (pos < o.size) & (o[np.minimum(pos, o.size - 1)] == batch.depths[:, s])
        depth_index[:, s] = np.where(found, pos, width - 1)
        for j, depth in enumerate(o):  # marginal of each depth: the target's mass on plans using it
            marg[:, s, j] = P[:, menu.plans[:, s] == depth].sum(axis=1)
    return depth_index, marg


def estimate_partial(batch: BanditBatch, ctx: Plan2Context) -> dict[str, Any]:
    """Column sums (and bootstrap replicate sums) of every estimator for every target."""
    n = len(batch)
    out: dict[str, Any] = {"n": n, "sum_reward": float(batch.reward.sum()), "targets": {}}
    W = _boot_weights(ctx.seed, batch.key, ctx.n_boot, n) if ctx.n_boot else None
    logged_theta = ctx.model.matrix(batch.depths) if n else np.zeros((0, batch.x.shape[1]))
    q_logged = np.einsum("ij,ij->i", batch.x, logged_theta)
    for spec in ctx.targets:
        policy = _cached_policy(spec.source)
        menu = policy.menu
        if tuple(menu.strategies) != tuple(batch.strategies):
            raise DataError(f"target {spec.name!r} plans over {list(menu.strategies)}, the log over "
                            f"{list(batch.strategies)}")
        try:
            P = batch_probabilities(policy, batch.x)
        except ValueError as exc:
            raise DataError(f"target {spec.name!r} cannot score the logged contexts: {exc} (the log's x "
                            f"has {batch.x.shape[1]} features; use a target with the logging engine's "
                            "context_features)") from None
        # logged plan -> target menu action (-1 when the target's menu lacks it: weight 0)
        match = (batch.depths[:, None, :] == menu.plans[None, :, :]).all(axis=2)
        action = np.where(match.any(axis=1), match.argmax(axis=1), -1)
        pi_logged = np.where(action >= 0, P[np.arange(n), np.maximum(action, 0)], 0.0)
        w = pi_logged / batch.propensity
        Q = batch.x @ ctx.model.matrix(menu.plans).T
        terms = RoundTerms(reward=batch.reward, weight=w, q_factual=q_logged,
                           q_target=np.einsum("ij,ij->i", P, Q))
        tgt: dict[str, Any] = {"sum_w": float(w.sum()), "sum_w2": float((w * w).sum()),
                               "max_w": float(w.max()) if n else 0.0, "outside_menu": int((action < 0).sum())}
        for est in make_estimators(ctx.estimators):
            if isinstance(est, FactoredIPS):
                if batch.strategy_reward is None:
                    continue
                depth_index, marg = _factored_inputs(batch, menu, P)
                ws = FactoredIPS.weights(depth_index, batch.strategy_propensity, marg)
                cols = {"n": np.ones(n)}
                for s in range(ws.shape[1]):
                    cols[f"sum_wr/{s}"] = ws[:, s] * batch.strategy_reward[:, s]
                    cols[f"sum_w/{s}"] = ws[:, s]
            else:
                cols = _columns(est, terms)
            keys = list(cols)
            C = np.stack([cols[k] for k in keys], axis=1)
            entry = {"keys": keys, "sum": C.sum(axis=0)}
            if W is not None:
                boot = np.zeros((ctx.n_boot, len(keys)))
                for lo in range(0, n, _BOOT_ROWS):
                    boot += W[:, lo: lo + _BOOT_ROWS] @ C[lo: lo + _BOOT_ROWS]
                entry["boot"] = boot
            tgt[est.label] = entry
        out["targets"][spec.name] = tgt
    return out


def merge_estimates(a: dict[str, Any] | None, b: dict[str, Any]) -> dict[str, Any]:
    if a is None:
        return b
    out = {"n": a["n"] + b["n"], "sum_reward": a["sum_reward"] + b["sum_reward"], "targets": {}}
    for name, ta in a["targets"].items():
        tb = b["targets"][name]
        t = {"sum_w": ta["sum_w"] + tb["sum_w"], "sum_w2": ta["sum_w2"] + tb["sum_w2"],
             "max_w": max(ta["max_w"], tb["max_w"]), "outside_menu": ta["outside_menu"] + tb["outside_menu"]}
        for label in set(ta) | set(tb):
            if label in t:
                continue
            if label not in ta or label not in tb:
                continue  # an estimator skipped in one chunk (e.g. no strategy rewards) is dropped
            ea, eb = ta[label], tb[label]
            e = {"keys": ea["keys"], "sum": ea["sum"] + eb["sum"]}
            if "boot" in ea:
                e["boot"] = ea["boot"] + eb["boot"]
            t[label] = e
        out["targets"][name] = t
    return out


def _safe_value(est, keys: list[str], sums: np.ndarray) -> float:
    """A bootstrap replicate's value; NaN when the replicate has no weight (left out)."""
    try:
        return est.value(dict(zip(keys, sums.tolist(), strict=True)))
    except DataError:
        return float("nan")


def finalize(stats: dict[str, Any], ctx: Plan2Context, report: LogReport, alpha: float = 0.05) -> dict[str, Any]:
    """Estimates, intervals and diagnostics from the merged sums."""
    if stats is None or stats["n"] == 0:
        report.check_nonempty()
        raise DataError(f"{report.path}: no record carries a plan, propensities and x; "
                        "off-policy evaluation needs a log written by ltrr")
    ests = {e.label: e for e in make_estimators(ctx.estimators)}
    result: dict[str, Any] = {"log": report.to_dict(), "rounds": stats["n"],
                              "logged_value": stats["sum_reward"] / stats["n"], "alpha": alpha,
                              "bootstrap": ctx.n_boot, "policies": {}}
    for name, t in stats["targets"].items():
        estimates = {}
        for label, est in ests.items():
            if label not in t:
                continue
            e = t[label]
            try:
                value = est.value(dict(zip(e["keys"], e["sum"].tolist(), strict=True)))
            except DataError as exc:  # e.g. SNIPS when no logged round has weight for this target
                estimates[label] = {"value": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"),
                                    "error": str(exc)}
                continue
            row = {"value": value}
            if "boot" in e:
                reps = np.array([_safe_value(est, e["keys"], b) for b in e["boot"]])
                row["ci_low"] = float(np.nanpercentile(reps, 100 * alpha / 2))
                row["ci_high"] = float(np.nanpercentile(reps, 100 * (1 - alpha / 2)))
            if isinstance(est, FactoredIPS):
                names = tuple(ctx.model.strategies)
                sums = dict(zip(e["keys"], e["sum"].tolist(), strict=True))
                row["per_strategy"] = dict(zip(names, est.per_strategy_values(sums).tolist(), strict=True))
            estimates[label] = row
        ess = t["sum_w"] ** 2 / t["sum_w2"] if t["sum_w2"] > 0 else 0.0
        result["policies"][name] = {
            "estimates": estimates, "mean_weight": t["sum_w"] / stats["n"], "max_weight": t["max_w"],
            "effective_sample_size": ess, "rounds_outside_menu": t["outside_menu"]}
    result["reward_model"] = {"ridge": DEFAULT_RIDGE,
                              "plans": {",".join(map(str, k)): v for k, v in ctx.model.counts.items()}}
    return result


# ----------------------------------------------------------------------------------------------
# drivers


def shard_reward_model(path: str, row_groups: Sequence[int] | None, strict: bool = False):
    reader = LogReader(path, strict=strict)
    stats = None
    for batch in reader.batches(row_groups):
        stats = merge_reward_model(stats, reward_model_partial(batch))
    return stats, reader.report


def shard_estimates(path: str, row_groups: Sequence[int] | None, ctx: Plan2Context, strict: bool = False):
    reader = LogReader(path, strict=strict)
    stats = None
    for batch in reader.batches(row_groups):
        stats = merge_estimates(stats, estimate_partial(batch, ctx))
    return stats


def evaluate(log: str | os.PathLike, targets: Sequence[TargetSpec], *,
             estimators: Sequence[str] = ESTIMATOR_NAMES, n_bootstrap: int = 200, seed: int = 0,
             alpha: float = 0.05, strict: bool = False, shards: int = 1,
             client: Any = None) -> dict[str, Any]:
    """Estimate every target's value from ``log``; ``shards > 1`` (Parquet) runs both passes
    shard-parallel on Dask (``client``, or a local cluster started for the call)."""
    if not targets:
        raise ConfigError("Give at least one target policy (--policy).")
    make_estimators(estimators)
    log = str(log)
    if shards > 1:
        from ltrr.offline.shards import sharded_evaluate

        return sharded_evaluate(log, targets, estimators=estimators, n_bootstrap=n_bootstrap, seed=seed,
                                alpha=alpha, strict=strict, shards=shards, client=client)
    model_stats, report = shard_reward_model(log, None, strict)
    report.check_nonempty()
    if model_stats is None:
        raise DataError(f"{log}: no record carries a plan, propensities and x; off-policy evaluation "
                        "needs a log written by ltrr")
    ctx = Plan2Context(tuple(targets), RewardModel.solve(model_stats), tuple(estimators), int(n_bootstrap), seed)
    stats = shard_estimates(log, None, ctx, strict)
    return finalize(stats, ctx, report, alpha)
