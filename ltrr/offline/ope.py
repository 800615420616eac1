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

The reward model is cross-fitted: each round is assigned one of ``K`` folds by a stream seeded
with ``(seed, chunk key)``, pass 1 keeps the ridge statistics per fold, and a round of fold ``k``
is predicted by the model solved from the other folds' statistics (``K = 1``: in-sample).

Foreign logs (Open Bandit Dataset CSV, DSJSON, mapped tables) are evaluated in memory by
:mod:`ltrr.offline.action_ope`; :func:`evaluate` dispatches on the log's format.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np

from ltrr.errors import ConfigError, DataError
from ltrr.offline.bootstrap import bootstrap_interval, poisson_replicate_sums
from ltrr.offline.diagnostics import (
    Thresholds,
    apply_identifiability,
    diagnose,
    merge_weight_sums,
    unavailable,
    weight_sums,
)
from ltrr.offline.estimators import FactoredIPS, RoundTerms
from ltrr.offline.logs import BanditBatch, LogReader, LogReport
from ltrr.offline.rewardmodel import RewardModelSpec
from ltrr.offline.targets import TargetSpec, parse_targets
from ltrr.offline.terms import (
    ESTIMATOR_NAMES,
    MODEL_BASED,
    bootstrap_info,
    check_bootstrap_method,
    columns,
    entry_from_sums,
    make_estimators,
    obp_entry,
    shared_key,
)

if TYPE_CHECKING:
    from ltrr.contracts.policy import PlanMenu, Policy

DEFAULT_RIDGE = 1.0


# ----------------------------------------------------------------------------------------------
# targets


def load_policy(source: str | os.PathLike) -> Policy:
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


def _cached_policy(source: str) -> Policy:
    """``load_policy`` cached per process (Dask workers load each target once), keyed by the
    source's modification time so a re-saved policy is reloaded."""
    path = Path(source)
    stamp = (path / "manifest.json") if path.is_dir() else path
    return _load_cached(str(source), stamp.stat().st_mtime_ns if stamp.exists() else 0)


@lru_cache(maxsize=16)
def _load_cached(source: str, _mtime_ns: int) -> Policy:
    return load_policy(source)


def target_specs(sources: Sequence[str]) -> list[TargetSpec]:
    """ltrr policy targets (config, engine or policy directory), named by their files, unique."""
    return parse_targets(policies=[str(s) for s in sources])


class _OnePlan(Protocol):
    """The fixed policy: always its menu plan ``action`` (-1 when the menu lacks it)."""

    action: int


class _Arms(Protocol):
    theta: np.ndarray  # float64[n_plans, n_features]: one ridge model per menu plan


class _PlanArms(Protocol):
    """A policy with one ridge model per menu plan (epsilon-greedy, softmax)."""

    arms: _Arms


def batch_probabilities(policy: Policy, X: np.ndarray) -> np.ndarray:
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
        action = cast(_OnePlan, policy).action
        p = np.zeros((n, k))
        if action >= 0:
            p[:, action] = 1.0
        return p
    if kind == "epsilon_greedy":
        eps = float(policy.params.epsilon)
        p = np.full((n, k), eps / k)
        p[np.arange(n), np.argmax(X @ cast(_PlanArms, policy).arms.theta.T, axis=1)] += 1.0 - eps
        return p
    if kind == "softmax":
        z = (X @ cast(_PlanArms, policy).arms.theta.T) / float(policy.params.temperature)
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)
    uniq, inverse = np.unique(X, axis=0, return_inverse=True)
    rows = np.stack([policy.probabilities(u) for u in uniq]) if len(uniq) else np.zeros((0, k))
    return rows[inverse.ravel()]



# ----------------------------------------------------------------------------------------------
# pass 1: the reward model (ridge statistics per fold and plan)


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


def fold_of(batch: BanditBatch, folds: int, seed: int) -> np.ndarray:
    """Each round's cross-fitting fold, drawn from a stream seeded by ``(seed, chunk key)`` (so
    it does not depend on sharding)."""
    if folds == 1:
        return np.zeros(len(batch), dtype=np.int64)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7919, *map(int, batch.key)]))
    return rng.integers(0, folds, len(batch))


def reward_model_partial(batch: BanditBatch, folds: int = 1, seed: int = 0) -> dict[str, Any]:
    """Ridge sufficient statistics per fold and logged plan (keyed by its depths), and pooled."""
    x, r = batch.x, batch.reward
    d = x.shape[1]
    fold = fold_of(batch, folds, seed)
    plans, inverse = _unique_rows(batch.depths)

    def stats(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        xx, xr, cnt = np.zeros((folds, d, d)), np.zeros((folds, d)), np.zeros(folds, dtype=np.int64)
        for k in range(folds):
            m = mask & (fold == k)
            xm = x[m]
            xx[k], xr[k], cnt[k] = xm.T @ xm, xm.T @ r[m], int(m.sum())
        return xx, xr, cnt

    per = {",".join(map(str, depths.tolist())): stats(inverse == j) for j, depths in enumerate(plans)}
    return {"strategies": batch.strategies, "folds": folds, "plans": per,
            "pooled": stats(np.ones(len(batch), dtype=bool))}


def merge_reward_model(a: dict[str, Any] | None, b: dict[str, Any]) -> dict[str, Any]:
    if a is None:
        return b
    if a["strategies"] != b["strategies"]:
        raise DataError(f"log shards disagree on the plan's strategies: {a['strategies']} vs {b['strategies']}")
    plans = dict(a["plans"])
    for key, st in b["plans"].items():
        plans[key] = tuple(u + v for u, v in zip(plans[key], st, strict=True)) if key in plans else st
    return {"strategies": a["strategies"], "folds": a["folds"], "plans": dict(sorted(plans.items())),
            "pooled": tuple(u + v for u, v in zip(a["pooled"], b["pooled"], strict=True))}


@dataclass(frozen=True)
class RewardModel:
    """Ridge regression of the reward on ``x``, one per logged plan (pooled as the fallback for
    plans never logged), solved once per fold: ``thetas[plan][k]`` is fitted on every fold but
    ``k`` (on everything when there is one fold)."""

    strategies: tuple[str, ...]
    thetas: dict[tuple[int, ...], np.ndarray]  # plan -> float[K, d]
    pooled: np.ndarray  # float[K, d]
    counts: dict[tuple[int, ...], int]
    ridge: float = DEFAULT_RIDGE

    @property
    def folds(self) -> int:
        return int(self.pooled.shape[0])

    @classmethod
    def solve(cls, stats: Mapping[str, Any], ridge: float = DEFAULT_RIDGE) -> RewardModel:
        def fit(xx: np.ndarray, xr: np.ndarray, cnt: np.ndarray) -> np.ndarray:
            K, d = xr.shape
            if K == 1:
                return np.linalg.solve(xx[0] + ridge * np.eye(d), xr[0])[None]
            out = np.zeros((K, d))
            tx, tr = xx.sum(axis=0), xr.sum(axis=0)
            for k in range(K):
                out[k] = np.linalg.solve(tx - xx[k] + ridge * np.eye(d), tr - xr[k])
            return out

        pooled = fit(*stats["pooled"])
        thetas, counts = {}, {}
        for key, st in stats["plans"].items():
            depths = tuple(int(v) for v in key.split(","))
            theta = fit(*st)
            cnt = np.asarray(st[2])
            # a fold whose training part (the other folds) never logged the plan uses the pooled model
            unseen = (cnt.sum() - cnt == 0) if len(cnt) > 1 else np.zeros(1, dtype=bool)
            theta[unseen] = pooled[unseen]
            thetas[depths] = theta
            counts[depths] = int(cnt.sum())
        return cls(tuple(stats["strategies"]), thetas, pooled, counts, ridge)

    def matrix(self, plans: np.ndarray, fold: int = 0) -> np.ndarray:
        """``float[n_plans, d]``: fold ``fold``'s model of each plan (pooled when never logged)."""
        uniq, inverse = _unique_rows(np.asarray(plans, dtype=np.int64))
        rows = np.stack([self.thetas.get(tuple(int(v) for v in p), self.pooled)[fold] for p in uniq])
        return rows[inverse]

    def predict(self, x: np.ndarray, plans: np.ndarray, fold: np.ndarray) -> np.ndarray:
        """``float[n, len(plans)]``: every plan's predicted reward for each round, by its fold."""
        out = np.empty((x.shape[0], len(plans)))
        for k in range(self.folds):
            m = fold == k
            if m.any():
                out[m] = x[m] @ self.matrix(plans, k).T
        return out

    def predict_logged(self, x: np.ndarray, depths: np.ndarray, fold: np.ndarray) -> np.ndarray:
        """``float[n]``: the predicted reward of each round's logged plan."""
        uniq, inverse = _unique_rows(np.asarray(depths, dtype=np.int64))
        q = self.predict(x, uniq, fold) if len(uniq) else np.zeros((x.shape[0], 0))
        return q[np.arange(x.shape[0]), inverse] if len(uniq) else np.zeros(x.shape[0])


# ----------------------------------------------------------------------------------------------
# pass 2: estimator columns


@dataclass(frozen=True)
class Plan2Context:
    """What pass 2 needs besides the log: targets, the solved reward model, options."""

    targets: tuple[TargetSpec, ...]
    model: RewardModel | None
    estimators: tuple[str, ...]
    n_boot: int
    seed: int
    method: str = "poisson"
    thresholds: Thresholds = Thresholds()


def _factored_inputs(batch: BanditBatch, menu: PlanMenu, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def _target_terms(batch: BanditBatch, ctx: Plan2Context, spec: TargetSpec, fold: np.ndarray,
                  q_logged: np.ndarray | None, logged_plans: set[tuple[int, ...]]
                  ) -> tuple[RoundTerms, dict[str, float], np.ndarray | None]:
    """The target's per-round terms, its diagnostic sums and (when asked) factored weights."""
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
    n = len(batch)
    # logged plan -> target menu action (-1 when the target's menu lacks it: weight 0)
    match = (batch.depths[:, None, :] == menu.plans[None, :, :]).all(axis=2)
    action = np.where(match.any(axis=1), match.argmax(axis=1), -1)
    pi_logged = np.where(action >= 0, P[np.arange(n), np.maximum(action, 0)], 0.0)
    w = pi_logged / batch.propensity
    q_target = None
    if ctx.model is not None:
        q_target = np.einsum("ij,ij->i", P, ctx.model.predict(batch.x, menu.plans, fold))
    terms = RoundTerms(reward=batch.reward, weight=w, q_factual=q_logged, q_target=q_target)
    never = np.array([tuple(int(v) for v in p) not in logged_plans for p in menu.plans])
    sums = weight_sums(w, batch.propensity, P[:, never].sum(axis=1), ctx.thresholds.weight_clip)
    sums["outside_menu"] = float((action < 0).sum())
    fact = None
    if any(e.startswith("factored") for e in ctx.estimators) and batch.strategy_reward is not None:
        depth_index, marg = _factored_inputs(batch, menu, P)
        fact = FactoredIPS.weights(depth_index, batch.strategy_propensity, marg)
    return terms, sums, fact


def estimate_partial(batch: BanditBatch, ctx: Plan2Context, logged_plans: set[tuple[int, ...]]) -> dict[str, Any]:
    """One chunk's column sums (Poisson bootstrap: and replicate sums, one weighting shared by
    every target and estimator) or per-round terms (OBP's bootstrap)."""
    n = len(batch)
    fold = fold_of(batch, ctx.model.folds if ctx.model is not None else 1, ctx.seed)
    q_logged = ctx.model.predict_logged(batch.x, batch.depths, fold) if ctx.model is not None else None
    out: dict[str, Any] = {"n": n, "sum_reward": float(batch.reward.sum()), "targets": {}}
    ests = make_estimators(ctx.estimators)
    blocks: list[np.ndarray] = []
    layout: list[tuple[str, str, int]] = []
    shared: dict[str, int] = {}
    for spec in ctx.targets:
        terms, sums, fact = _target_terms(batch, ctx, spec, fold, q_logged, logged_plans)
        tgt: dict[str, Any] = {"weights": sums, "no_strategy_rewards": batch.strategy_reward is None}
        if ctx.method == "obp":
            tgt["rounds"] = {"reward": terms.reward, "weight": terms.weight, "q_factual": terms.q_factual,
                             "q_target": terms.q_target}
            if fact is not None:
                tgt["rounds"]["factored_w"] = fact
                tgt["rounds"]["strategy_reward"] = batch.strategy_reward
        for est in ests:
            if isinstance(est, FactoredIPS):
                if fact is None or batch.strategy_reward is None:  # fact needs strategy rewards
                    continue
                cols = {"n": np.ones(n)}
                for s in range(fact.shape[1]):
                    cols[f"sum_wr/{s}"] = fact[:, s] * batch.strategy_reward[:, s]
                    cols[f"sum_w/{s}"] = fact[:, s]
            elif est.label in MODEL_BASED and ctx.model is None:
                continue
            else:
                cols = columns(est, terms)
            keys = list(cols)
            C = np.stack([cols[k] for k in keys], axis=1)
            tgt[est.label] = {"keys": keys, "sum": C.sum(axis=0)}
            if ctx.n_boot and ctx.method == "poisson":
                for j, key in enumerate(keys):
                    name = "n" if key == "n" else f"{spec.name}\x00{shared_key(est, key)}"
                    if name not in shared:
                        shared[name] = len(blocks)
                        blocks.append(C[:, j])
                    layout.append((spec.name, est.label, shared[name]))
        out["targets"][spec.name] = tgt
    if blocks:
        # estimators share columns (every one has the count n; SNIPS and SNDR the weight sum; IPS
        # and SNIPS the weighted reward): one product per distinct column, one weighting for all
        boot = poisson_replicate_sums(np.stack(blocks, axis=1), ctx.n_boot, ctx.seed, batch.key)
        columns_of: dict[tuple[str, str], list[int]] = {}
        for name, label, j in layout:
            columns_of.setdefault((name, label), []).append(j)
        for (name, label), idx in columns_of.items():
            out["targets"][name][label]["boot"] = boot[:, idx]
    return out


def merge_estimates(a: dict[str, Any] | None, b: dict[str, Any]) -> dict[str, Any]:
    """Add two chunks' sums (in log order: per-round terms are concatenated)."""
    if a is None:
        return b
    out = {"n": a["n"] + b["n"], "sum_reward": a["sum_reward"] + b["sum_reward"], "targets": {}}
    for name, ta in a["targets"].items():
        tb = b["targets"][name]
        t: dict[str, Any] = {"weights": merge_weight_sums(ta["weights"], tb["weights"]),
                             "no_strategy_rewards": ta["no_strategy_rewards"] or tb["no_strategy_rewards"]}
        if "rounds" in ta:
            t["rounds"] = {k: (None if ta["rounds"].get(k) is None or tb["rounds"].get(k) is None
                               else np.concatenate([ta["rounds"][k], tb["rounds"][k]]))
                           for k in set(ta["rounds"]) | set(tb["rounds"])}
        for label in set(ta) | set(tb):
            if label in ("weights", "no_strategy_rewards", "rounds") or label not in ta or label not in tb:
                continue  # an estimator missing in one chunk (no strategy rewards) is unavailable
            ea, eb = ta[label], tb[label]
            e = {"keys": ea["keys"], "sum": ea["sum"] + eb["sum"]}
            if "boot" in ea:
                e["boot"] = ea["boot"] + eb["boot"]
            t[label] = e
        out["targets"][name] = t
    return out


def _factored_obp(est: FactoredIPS, rounds: Mapping[str, np.ndarray], ctx: Plan2Context, alpha: float,
                  value: float) -> dict[str, Any]:
    w, r = rounds["factored_w"], rounds["strategy_reward"]
    terms = w * r
    if est.self_normalized:
        terms = terms / w.mean(axis=0)
    ci = bootstrap_interval(terms.sum(axis=1), alpha, ctx.n_boot, int(ctx.seed))
    return {"ci_low": ci.low, "ci_high": ci.high, "boot_mean": ci.mean}


def finalize(stats: dict[str, Any], ctx: Plan2Context, report: LogReport, alpha: float = 0.05) -> dict[str, Any]:
    """Estimates, intervals and diagnostics from the merged sums."""
    if stats is None or stats["n"] == 0:
        report.check_nonempty()
        raise DataError(f"{report.path}: no record carries a plan, propensities and x; "
                        "off-policy evaluation needs a log written by ltrr")
    ests = make_estimators(ctx.estimators)
    result: dict[str, Any] = {"log": report.to_dict() | {"format": "ltrr"}, "rounds": stats["n"],
                              "logged_value": stats["sum_reward"] / stats["n"], "alpha": alpha,
                              "bootstrap": bootstrap_info(ctx.method, ctx.n_boot, ctx.seed), "policies": {}}
    for name, t in stats["targets"].items():
        estimates: dict[str, dict[str, Any]] = {}
        terms = None
        if "rounds" in t:
            rd = t["rounds"]
            terms = RoundTerms(rd["reward"], rd["weight"], rd.get("q_factual"), rd.get("q_target"))
        for est in ests:
            label = est.label
            if label not in t:
                if isinstance(est, FactoredIPS):
                    estimates[label] = unavailable(
                        "the log has no per-strategy rewards (strategy_rewards) in some or all rounds; "
                        "factored IPS needs them")
                else:
                    estimates[label] = unavailable(f"{label} needs a reward model (--reward-model none)")
                continue
            e = t[label]
            if terms is not None and not isinstance(est, FactoredIPS):
                estimates[label] = obp_entry(est, terms, ctx.n_boot, alpha, ctx.seed)
                continue
            row = entry_from_sums(est, e["keys"], e["sum"], e.get("boot"), alpha)
            if isinstance(est, FactoredIPS) and row["status"] == "ok":
                sums = dict(zip(e["keys"], e["sum"].tolist(), strict=True))
                row["per_strategy"] = dict(zip(ctx.model.strategies if ctx.model else
                                               tuple(str(s) for s in range(len(sums))),
                                               est.per_strategy_values(sums).tolist(), strict=False))
                if terms is not None and ctx.n_boot:
                    row.update(_factored_obp(est, t["rounds"], ctx, alpha, row["value"]))
            estimates[label] = row
        diag = diagnose(t["weights"], ctx.thresholds)
        diag["rounds_outside_menu"] = int(t["weights"]["outside_menu"])
        result["policies"][name] = {
            "source": next(s.source for s in ctx.targets if s.name == name), "kind": "policy",
            "estimates": apply_identifiability(estimates, diag), "diagnostics": diag,
            # flat copies of the main diagnostics (kept for readers of earlier ope.json files)
            "mean_weight": diag["mean_weight"], "max_weight": diag["max_weight"],
            "effective_sample_size": diag["effective_sample_size"],
            "rounds_outside_menu": diag["rounds_outside_menu"]}
    if ctx.model is not None:
        result["reward_model"] = {"kind": "ridge", "per": "logged plan (pooled for plans never logged)",
                                  "ridge": ctx.model.ridge, "folds": ctx.model.folds,
                                  "cross_fitted": ctx.model.folds > 1, "seed": ctx.seed,
                                  "plans": {",".join(map(str, k)): v for k, v in ctx.model.counts.items()}}
    else:
        result["reward_model"] = {"kind": "none"}
    return result


# ----------------------------------------------------------------------------------------------
# drivers


def shard_reward_model(path: str, row_groups: Sequence[int] | None, strict: bool = False,
                       folds: int = 1, seed: int = 0) -> tuple[dict[str, Any] | None, LogReport]:
    """Pass 1 over one shard (all of the log when ``row_groups`` is None): the reward model's
    sufficient statistics (None when no record carries a plan) and the log report."""
    reader = LogReader(path, strict=strict)
    stats = None
    for batch in reader.batches(row_groups):
        stats = merge_reward_model(stats, reward_model_partial(batch, folds, seed))
    return stats, reader.report


def shard_estimates(path: str, row_groups: Sequence[int] | None, ctx: Plan2Context, strict: bool = False,
                    logged_plans: frozenset[tuple[int, ...]] = frozenset()) -> dict[str, Any] | None:
    """Pass 2 over one shard: every target's column sums (None when no record carries a plan)."""
    reader = LogReader(path, strict=strict)
    stats = None
    for batch in reader.batches(row_groups):
        stats = merge_estimates(stats, estimate_partial(batch, ctx, set(logged_plans)))
    return stats


def check_pass1(log: str, model_stats: dict[str, Any] | None, report: LogReport) -> dict[str, Any]:
    """Stop before estimating when the log is empty, unusable or has impossible propensities;
    else return ``model_stats`` (then known to be present)."""
    report.check_nonempty()
    if report.counts.get("bad_propensity"):
        raise DataError(f"{report.examples['bad_propensity'][0]} ({report.counts['bad_propensity']} records "
                        "have propensities outside (0, 1]; off-policy evaluation will not silently drop them)")
    if model_stats is None:
        raise DataError(f"{log}: no record carries a plan, propensities and x; off-policy evaluation "
                        "needs a log written by ltrr")
    return model_stats


def plan_context(model_stats: dict[str, Any], targets: Sequence[TargetSpec], estimators: Sequence[str],
                 reward_model: RewardModelSpec, n_bootstrap: int, seed: int, method: str,
                 thresholds: Thresholds) -> tuple[Plan2Context, frozenset[tuple[int, ...]]]:
    need = any(e in MODEL_BASED for e in estimators) and reward_model.kind != "none"
    model = RewardModel.solve(model_stats, float(reward_model.params.get("alpha", DEFAULT_RIDGE))) if need else None
    logged = frozenset(tuple(int(v) for v in k.split(",")) for k in model_stats["plans"])
    return Plan2Context(tuple(targets), model, tuple(estimators), int(n_bootstrap), seed, method, thresholds), logged


def check_plan_reward_model(spec: RewardModelSpec) -> None:
    if spec.kind not in ("auto", "ridge", "none") or spec.path is not None:
        raise ConfigError(f"ltrr plan logs use the streaming, cross-fitted ridge model per plan "
                          f"(--reward-model ridge or none); {spec.path or spec.kind!r} is for foreign "
                          "(obd, dsjson, columns) logs")
    unknown = sorted(set(spec.params) - {"alpha"})
    if unknown:
        raise ConfigError(f"Unknown parameter {unknown[0]!r} of the plan-log ridge model; known: alpha")


def evaluate(log: str | os.PathLike, targets: Sequence[TargetSpec], *,
             estimators: Sequence[str] | None = None, n_bootstrap: int = 200, seed: int = 0,
             alpha: float = 0.05, strict: bool = False, shards: int = 1, client: Any = None,
             log_format: str | None = None, mapping: Any = None,
             reward_model: RewardModelSpec | None = None, bootstrap_method: str = "poisson",
             thresholds: Thresholds | None = None) -> dict[str, Any]:
    """Estimate every target's value from ``log``.

    ltrr plan logs stream in two passes; ``shards > 1`` (Parquet) runs both shard-parallel on
    Dask (``client``, or a local cluster started for the call). Foreign logs (``obd``,
    ``dsjson``, ``columns``) are read into memory and evaluated by
    :func:`ltrr.offline.action_ope.evaluate_action_log`.
    """
    from ltrr.offline.formats import detect_format, read_action_log

    if not targets:
        raise ConfigError("Give at least one target policy (--policy, --target-dist or --vw-model).")
    log = str(log)
    fmt = detect_format(log, log_format, mapping)
    if estimators is None:  # every estimator the log supports
        estimators = ESTIMATOR_NAMES if fmt == "ltrr" else tuple(e for e in ESTIMATOR_NAMES if not e.startswith("factored"))
    make_estimators(estimators)
    check_bootstrap_method(bootstrap_method)
    thresholds = thresholds or Thresholds()
    reward_model = reward_model or RewardModelSpec(seed=seed)
    if fmt != "ltrr":
        from ltrr.offline.action_ope import evaluate_action_log

        if shards > 1:
            raise ConfigError(f"--shards applies to ltrr Parquet logs; {log} is a {fmt} log, evaluated in memory")
        action_log = read_action_log(log, fmt, mapping)
        return evaluate_action_log(action_log, targets, estimators=estimators, reward_model=reward_model,
                                   n_bootstrap=n_bootstrap, bootstrap_method=bootstrap_method, seed=seed,
                                   alpha=alpha, thresholds=thresholds)
    bad = [t for t in targets if t.kind != "policy"]
    if bad:
        raise ConfigError(f"target {bad[0].name!r}: ltrr plan logs are evaluated against ltrr policies "
                          "(--policy CONFIG|ENGINE|POLICY); action distributions and VW models are for "
                          "foreign logs")
    check_plan_reward_model(reward_model)
    if shards > 1:
        from ltrr.offline.shards import sharded_evaluate

        return sharded_evaluate(log, targets, estimators=estimators, n_bootstrap=n_bootstrap, seed=seed,
                                alpha=alpha, strict=strict, shards=shards, client=client,
                                reward_model=reward_model, bootstrap_method=bootstrap_method,
                                thresholds=thresholds)
    model_stats, report = shard_reward_model(log, None, strict, reward_model.folds, seed)
    pooled = check_pass1(log, model_stats, report)
    ctx, logged = plan_context(pooled, targets, estimators, reward_model, n_bootstrap, seed,
                               bootstrap_method, thresholds)
    stats = shard_estimates(log, None, ctx, strict, logged)
    assert stats is not None, "pass 1 found records with a plan, so pass 2 reads at least one batch"
    return finalize(stats, ctx, report, alpha)
