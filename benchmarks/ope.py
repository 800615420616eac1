"""Benchmark: off-policy estimator throughput against Open Bandit Pipeline 0.4.1, single process.

A seeded synthetic log of ``--events`` rounds (default 1M) with ``--actions`` actions and
``--len-list`` positions: uniform-random logger, a softmax target, a noisy reward model. For each
estimator we time ``estimate_policy_value`` on the whole log (validation included, for both
libraries), best of ``--repeat`` runs, and check the two values agree to 1e-9. Also timed: the
shard path (``partial`` on 8 shards + ``merge``) and reusing one ``RoundTerms`` for all six
estimators, as ``ltrr.offline.estimators.estimate`` does. Target: >= 200k events/s for
IPS/SNIPS/DR. Prints one JSON line per result; ``ratio_vs_obp`` is OBP's time / ours (> 1 means
we are faster).

    .venv/bin/python benchmarks/ope.py [--events 1000000] [--actions 10] [--len-list 1]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ltrr.offline.estimators import (  # noqa: E402
    DM,
    DR,
    IPS,
    SNDR,
    SNIPS,
    RoundTerms,
    SwitchDR,
    merge,
)


def synthetic_log(n: int, n_actions: int, len_list: int, seed: int) -> dict[str, np.ndarray]:
    """A uniform-random logger, a softmax target and a noisy reward model, all seeded."""
    rng = np.random.default_rng(seed)
    true_q = rng.uniform(0.0, 0.3, (n_actions, len_list))
    logits = rng.normal(0.0, 1.0, (n, n_actions, 1)).astype(np.float64)
    action_dist = np.exp(logits - logits.max(axis=1, keepdims=True))
    action_dist /= action_dist.sum(axis=1, keepdims=True)
    action_dist = np.repeat(action_dist, len_list, axis=2) if len_list > 1 else action_dist
    action = rng.integers(0, n_actions, n)
    position = rng.integers(0, len_list, n)
    reward = (rng.random(n) < true_q[action, position]).astype(np.float64)
    q_hat = np.clip(true_q[None, :, :] + rng.normal(0.0, 0.02, (n, n_actions, len_list)), 0, 1)
    out = dict(reward=reward, action=action, pscore=np.full(n, 1.0 / n_actions),
               action_dist=action_dist, estimated_rewards_by_reg_model=q_hat)
    if len_list > 1:
        out["position"] = position
    return out


def best_time(fn, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def _subset(arrays: dict, keys: tuple[str, ...]) -> dict:
    return {k: arrays[k] for k in keys if k in arrays}


LOG_KEYS = ("reward", "action", "pscore", "action_dist", "position")
DR_KEYS = (*LOG_KEYS, "estimated_rewards_by_reg_model")
DM_KEYS = ("action_dist", "position", "estimated_rewards_by_reg_model")


def throughput(args: argparse.Namespace) -> None:
    arrays = synthetic_log(args.events, args.actions, args.len_list, args.seed)
    n = args.events
    try:
        from obp import ope as obp_ope
    except ImportError:  # the comparison is optional; our numbers still print
        obp_ope = None
    ours = [
        (IPS(), "InverseProbabilityWeighting", LOG_KEYS, LOG_KEYS, {}),
        (SNIPS(), "SelfNormalizedInverseProbabilityWeighting", LOG_KEYS, LOG_KEYS, {}),
        (DM(), "DirectMethod", DR_KEYS, DM_KEYS, {}),
        (DR(), "DoublyRobust", DR_KEYS, DR_KEYS, {}),
        (SNDR(), "SelfNormalizedDoublyRobust", DR_KEYS, DR_KEYS, {}),
        (SwitchDR(tau=5.0), "SwitchDoublyRobust", DR_KEYS, DR_KEYS, {"tau": 5.0}),
    ]
    base = dict(bench="ope_throughput", n_events=n, n_actions=args.actions,
                len_list=args.len_list)
    for est, obp_name, keys, obp_keys, obp_kw in ours:
        # DM needs only the model, but the log is passed as in a real run (validated too)
        kw = _subset(arrays, keys if not isinstance(est, DM) else DM_KEYS)
        seconds, value = best_time(lambda kw=kw, est=est: est.estimate_policy_value(**kw),
                                   args.repeat)
        row = dict(base, estimator=est.label, seconds=round(seconds, 4),
                   events_per_s=round(n / seconds), value=value)
        if obp_ope is not None:
            ref = getattr(obp_ope, obp_name)(**obp_kw)
            okw = _subset(arrays, obp_keys)
            obp_seconds, obp_value = best_time(
                lambda okw=okw, ref=ref: ref.estimate_policy_value(**okw), args.repeat)
            row.update(obp_seconds=round(obp_seconds, 4),
                       obp_events_per_s=round(n / obp_seconds),
                       ratio_vs_obp=round(obp_seconds / seconds, 3),
                       abs_diff_vs_obp=abs(value - float(obp_value)))
            if abs(value - float(obp_value)) > 1e-9:
                row["parity"] = "FAILED"
        print(json.dumps(row), flush=True)

    # all six estimators from one pass over the log (terms computed once)
    def all_six() -> list[float]:
        terms = RoundTerms.compute(**_subset(arrays, DR_KEYS))
        return [e.value_from_terms(terms) for e, *_ in ours]

    seconds, _ = best_time(all_six, args.repeat)
    print(json.dumps(dict(base, estimator="all six, shared terms", seconds=round(seconds, 4),
                          events_per_s=round(n / seconds))), flush=True)

    # shard path: partial sums on 8 shards, merged
    bounds = np.linspace(0, n, 9).astype(int)

    def sharded(est=DR()) -> float:
        kw = _subset(arrays, DR_KEYS)
        stats = None
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            part = est.partial(**{k: v[lo:hi] for k, v in kw.items()})
            stats = part if stats is None else merge(stats, part)
        return est.value(stats)

    seconds, value = best_time(sharded, args.repeat)
    whole = DR().estimate_policy_value(**_subset(arrays, DR_KEYS))
    print(json.dumps(dict(base, estimator="dr, 8 shards merged", seconds=round(seconds, 4),
                          events_per_s=round(n / seconds),
                          abs_diff_vs_single_pass=abs(value - whole))), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--actions", type=int, default=10)
    parser.add_argument("--len-list", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    throughput(args)


if __name__ == "__main__":
    main()
