"""``ltrr ope``: off-policy evaluation of target policies from an ltrr-written click log (a thin
layer over :func:`ltrr.offline.ope.evaluate`)."""

from __future__ import annotations

import json
import os

# OPE's matrix products are skinny (rounds x a few plans): BLAS threads only contend; shard-level
# parallelism (--shards) is the way to use more cores. Must be set before numpy loads BLAS.
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from pathlib import Path  # noqa: E402

import click  # noqa: E402

from ltrr.offline.ope import ESTIMATOR_NAMES  # noqa: E402


def format_table(result: dict) -> str:
    """Fixed-width table: one row per (policy, estimator)."""
    level = int(round(100 * (1 - result["alpha"])))
    head = f"{'policy':<20} {'estimator':<14} {'value':>8} {f'{level}% CI':>19} {'ESS':>8} {'max w':>7}"
    lines = [head, "-" * len(head)]
    for name, p in result["policies"].items():
        for est, e in p["estimates"].items():
            ci = f"[{e['ci_low']:.4f}, {e['ci_high']:.4f}]" if "ci_low" in e else ""
            lines.append(f"{name:<20} {est:<14} {e['value']:>8.4f} {ci:>19} "
                         f"{p['effective_sample_size']:>8.1f} {p['max_weight']:>7.2f}")
    return "\n".join(lines)


@click.command()
@click.option("--log", "log_path", required=True, type=click.Path(dir_okay=False),
              help="Click log written by ltrr (with plan, propensities and x), JSONL or Parquet.")
@click.option("--policy", "policies", required=True, multiple=True,
              help="Target policy: an engine config (TOML) or a saved engine/policy directory. Repeat.")
@click.option("--estimators", default=",".join(ESTIMATOR_NAMES), show_default=True,
              help="Comma-separated estimators.")
@click.option("--bootstrap", "n_bootstrap", default=200, show_default=True, type=click.IntRange(min=0),
              help="Poisson bootstrap replicates for the intervals (0 = point estimates only).")
@click.option("--alpha", default=0.05, show_default=True, type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--shards", default=1, show_default=True, type=click.IntRange(min=1),
              help="Run both passes shard-parallel on a local Dask cluster (Parquet logs).")
@click.option("--strict", is_flag=True, help="Stop at the first bad record instead of skipping it.")
@click.option("--out", "out_dir", default="ope-report", show_default=True, type=click.Path(file_okay=False),
              help="Directory for ope.json, report.html and estimates.png.")
def ope(log_path: str, policies: tuple[str, ...], estimators: str, n_bootstrap: int, alpha: float,
        seed: int, shards: int, strict: bool, out_dir: str) -> None:
    """Estimate target policies' values from a log of another policy (IPS, SNIPS, DM, DR,
    SNDR, switch-DR, factored IPS), with bootstrap confidence intervals."""
    from ltrr.offline.ope import evaluate, target_specs
    from ltrr.offline.report import ope_report
    from ltrr.store.persist import write_json

    names = [e.strip() for e in estimators.split(",") if e.strip()]
    result = evaluate(log_path, target_specs(policies), estimators=names, n_bootstrap=n_bootstrap,
                      seed=seed, alpha=alpha, strict=strict, shards=shards)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "ope.json", result)
    ope_report(out, result)
    log = result["log"]
    click.echo(f"{result['rounds']} rounds evaluated ({log['skipped']} records skipped); logged policy's "
               f"average reward {result['logged_value']:.4f}")
    click.echo(format_table(result))
    if log["problems"]:
        click.echo("log problems: " + json.dumps(log["problems"]), err=True)
    click.echo(json.dumps({"json": str(out / "ope.json"), "report": str(out / "report.html")}))
