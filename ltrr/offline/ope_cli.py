"""``ltrr ope``: off-policy evaluation of target policies from a bandit log (a thin layer over
:func:`ltrr.offline.ope.evaluate`)."""

from __future__ import annotations

import os

# OPE's matrix products are skinny (rounds x a few plans): BLAS threads only contend; shard-level
# parallelism (--shards) is the way to use more cores. Must be set before numpy loads BLAS.
# (pyarrow's decode pool is left alone: single-process it is what uses the second core.)
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import click  # noqa: E402

from ltrr.offline.formats import FORMATS  # noqa: E402
from ltrr.offline.rewardmodel import MODELS  # noqa: E402
from ltrr.offline.terms import BOOTSTRAP_METHODS, ESTIMATOR_NAMES  # noqa: E402


def _num(v) -> str:
    return "nan" if v is None else f"{v:.4f}"


def format_table(result: dict) -> str:
    """Fixed-width table: one row per (policy, estimator), then each policy's diagnostics."""
    level = int(round(100 * (1 - result["alpha"])))
    truth = result.get("truth") or {}
    head = f"{'policy':<20} {'estimator':<14} {'value':>17} {f'{level}% CI':>19} {'truth':>8}"
    lines = [head, "-" * len(head)]
    for name, p in result["policies"].items():
        for est, e in p["estimates"].items():
            if e.get("status", "ok") != "ok":
                value, ci = e["status"], ""
            else:
                value = f"{e['value']:.4f}"
                ci = f"[{_num(e.get('ci_low'))}, {_num(e.get('ci_high'))}]" if "ci_low" in e else ""
            t = f"{truth[name]:.4f}" if name in truth else ""
            lines.append(f"{name:<20} {est:<14} {value:>17} {ci:>19} {t:>8}")
    lines.append("")
    dhead = f"{'policy':<20} {'ESS':>10} {'ESS/n':>7} {'max w':>9} {'mean w':>8} {'unsupported':>11}"
    lines += [dhead, "-" * len(dhead)]
    for name, p in result["policies"].items():
        d = p["diagnostics"]
        lines.append(f"{name:<20} {d['effective_sample_size']:>10.1f} {d['ess_fraction']:>7.3f} "
                     f"{d['max_weight']:>9.3g} {d['mean_weight']:>8.3f} {d['unsupported_mass']:>11.3f}")
    for name, p in result["policies"].items():
        for w in p["diagnostics"]["warnings"]:
            lines.append(f"warning [{name}]: {w}")
    return "\n".join(lines)


@click.command()
@click.option("--log", "log_path", required=True, type=click.Path(dir_okay=False),
              help="Bandit log: ltrr JSONL/Parquet, Open Bandit Dataset CSV, VW DSJSON, or any "
                   "CSV/JSONL/Parquet with --map.")
@click.option("--format", "log_format", type=click.Choice(FORMATS), default=None,
              help="The log's format (default: detected from the file).")
@click.option("--map", "map_entries", multiple=True, metavar="KEY=COLUMN",
              help="Column mapping for --format columns: action, reward|cost, propensity, position, "
                   "context (comma-separated names or globs). Repeat.")
@click.option("--mapping", "mapping_file", type=click.Path(dir_okay=False), default=None,
              help="Column mapping as a small TOML file (same keys as --map).")
@click.option("--policy", "policies", multiple=True, metavar="[NAME=]PATH",
              help="Target: an ltrr engine config (TOML) or a saved engine/policy directory. Repeat.")
@click.option("--target-dist", "dists", multiple=True, metavar="[NAME=]FILE",
              help="Target: an action-distribution file (.npy/Parquet, rounds x actions [x positions], "
                   "OBP's action_dist layout; a first dimension of 1 applies to every round). Repeat.")
@click.option("--vw-model", "vw_models", multiple=True, metavar="[NAME=]FILE",
              help="Target: a saved Vowpal Wabbit cb_explore_adf model (DSJSON logs). Repeat.")
@click.option("--estimators", default=None,
              help=f"Comma-separated estimators (default: {','.join(ESTIMATOR_NAMES)}; factored-ips only on "
                   "ltrr plan logs).")
@click.option("--reward-model", type=click.Choice(MODELS), default="auto", show_default=True,
              help="Reward model of DM/DR/SNDR/switch-DR (auto: logistic for 0/1 rewards, else ridge; "
                   "ltrr plan logs: streaming ridge per plan).")
@click.option("--folds", default=3, show_default=True, type=click.IntRange(min=1),
              help="Cross-fitting folds of the reward model (1 = fitted and evaluated in-sample).")
@click.option("--reward-param", "reward_params", multiple=True, metavar="KEY=VALUE",
              help="Reward-model hyperparameter (ridge: alpha; logistic: C, max_iter; lightgbm: "
                   "n_estimators, learning_rate, num_leaves, min_child_samples).")
@click.option("--estimated-rewards", type=click.Path(dir_okay=False), default=None,
              help="Use these estimated rewards (.npy, rounds x actions [x positions]) instead of fitting.")
@click.option("--bootstrap", "n_bootstrap", default=200, show_default=True, type=click.IntRange(min=0),
              help="Bootstrap replicates for the intervals (0 = point estimates only).")
@click.option("--bootstrap-method", type=click.Choice(BOOTSTRAP_METHODS), default="poisson", show_default=True,
              help="poisson: streamed, mergeable over shards; obp: Open Bandit Pipeline's resampling "
                   "(its intervals exactly, for the same --seed).")
@click.option("--alpha", default=0.05, show_default=True, type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True))
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seeds the bootstrap and the reward model's folds.")
@click.option("--shards", default=1, show_default=True, type=click.IntRange(min=1),
              help="ltrr Parquet logs: run both passes over this many shards on Dask (default: one process).")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
              help="Run the shards on this Dask scheduler instead of a local cluster.")
@click.option("--min-ess-fraction", default=0.01, show_default=True, type=click.FloatRange(0.0, 1.0),
              help="Warn when the effective sample size is below this share of the rounds.")
@click.option("--weight-clip", default=100.0, show_default=True, type=click.FloatRange(0.0, min_open=True),
              help="Warn when an importance weight exceeds this.")
@click.option("--truth", "truth", multiple=True, metavar="[NAME=]FILE",
              help="Ground truth: a JSON number / {policy: value}, or an on-policy log of the target.")
@click.option("--strict", is_flag=True, help="Stop at the first bad record instead of skipping it.")
@click.option("--out", "out_dir", default="ope-report", show_default=True, type=click.Path(file_okay=False),
              help="Directory for ope.json, report.html and estimates.png (written whole or not at all).")
@click.option("--json", "as_json", is_flag=True, help="Print the result (ope.json) instead of tables.")
def ope(log_path, log_format, map_entries, mapping_file, policies, dists, vw_models, estimators,
        reward_model, folds, reward_params, estimated_rewards, n_bootstrap, bootstrap_method, alpha, seed,
        shards, scheduler, min_ess_fraction, weight_clip, truth, strict, out_dir, as_json) -> None:
    """Estimate target policies' values from a log of another policy (IPS, SNIPS, DM, DR, SNDR,
    switch-DR, factored IPS), with bootstrap intervals and weight diagnostics."""
    from ltrr.offline.diagnostics import Thresholds
    from ltrr.offline.formats import ColumnMapping
    from ltrr.offline.ope import evaluate
    from ltrr.offline.report import ope_report
    from ltrr.offline.rewardmodel import RewardModelSpec, parse_params
    from ltrr.offline.targets import parse_targets
    from ltrr.offline.truth import parse_truth
    from ltrr.store.persist import atomic_directory, write_json

    names = None if estimators is None else [e.strip() for e in estimators.split(",") if e.strip()]
    targets = parse_targets(policies, dists, vw_models)
    mapping = ColumnMapping.parse(map_entries, mapping_file)
    spec = RewardModelSpec(reward_model, folds, seed, estimated_rewards, parse_params(reward_params))
    truths = parse_truth(truth, [t.name for t in targets])
    client = None
    if scheduler:
        from ltrr.cluster import connect

        client = connect(scheduler)
        if shards == 1:  # one shard per worker of that cluster, unless --shards says otherwise
            shards = max(len(client.scheduler_info().get("workers", {})), 2)
    try:
        result = evaluate(log_path, targets, estimators=names, n_bootstrap=n_bootstrap, seed=seed, alpha=alpha,
                          strict=strict, shards=shards, client=client, log_format=log_format, mapping=mapping,
                          reward_model=spec, bootstrap_method=bootstrap_method,
                          thresholds=Thresholds(min_ess_fraction, weight_clip))
    finally:
        if client is not None:
            client.close()
    result["truth"] = truths
    out = Path(out_dir)
    with atomic_directory(out) as tmp:
        write_json(tmp / "ope.json", result)
        ope_report(tmp, result, truths)
    log = result["log"]
    if log["problems"]:
        click.echo("log problems: " + json.dumps(log["problems"]), err=True)
    if as_json:
        click.echo((out / "ope.json").read_text(encoding="utf-8"))
        return
    boot = result["bootstrap"]
    click.echo(f"{result['rounds']} rounds evaluated ({log['skipped']} records skipped; format "
               f"{log.get('format', 'ltrr')}); logged policy's average reward {result['logged_value']:.4f}; "
               f"intervals: {boot['method']} bootstrap, {boot['replicates']} replicates; reward model: "
               f"{result['reward_model'].get('kind')}"
               + (f" cross-fitted over {result['reward_model']['folds']} folds"
                  if result["reward_model"].get("cross_fitted") else ""))
    click.echo(format_table(result))
    click.echo(f"wrote {out / 'ope.json'} and {out / 'report.html'}")
