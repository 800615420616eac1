"""HTML reports with PNG plots (matplotlib, Agg backend) for replay and off-policy evaluation.

``replay_report(out)`` reads ``out/metrics.jsonl`` and ``out/summary.json``: cumulative reward
and regret over time, strategy share over time per query type. ``ope_report(out, result)`` plots
each target policy's estimates with their intervals, against ground truth when it is known.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _table(rows: list[list[Any]], head: list[str]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return html.escape(str(v))

    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for r in rows:
        out.append("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>")
    return "\n".join(out) + "</table>"


_STYLE = ("<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
          "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
          "img{max-width:100%}.note{color:#555}</style>")


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"{_STYLE}</head><body><h1>{html.escape(title)}</h1>{body}</body></html>")


def replay_report(out: str | os.PathLike) -> Path:
    """Write ``out/report.html`` with ``cumulative.png`` and ``strategy_share.png``."""
    out = Path(out)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    summary = json.loads((out / "summary.json").read_text())
    plt = _pyplot()
    x = np.array([m["records"] for m in lines], dtype=float)
    reward = np.array([m["full_information"]["cumulative_reward"] for m in lines])
    regret = np.array([m["full_information"]["cumulative_regret"] for m in lines])
    regret_fixed = np.array([m["full_information"].get("cumulative_regret_vs_best_fixed_plan", np.nan)
                             for m in lines])
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    ax[0].plot(x, reward, label="chosen plan")
    ax[0].plot(x, reward + regret, label="best plan per record (oracle)", linestyle="--")
    ax[0].plot(x, reward + regret_fixed, label="best fixed plan so far", linestyle=":")
    ax[0].set(title="Cumulative reward (full-information)", xlabel="records", ylabel="reward")
    ax[0].legend()
    ax[1].plot(x, regret, color="C3", label="vs best plan per record")
    ax[1].plot(x, regret_fixed, color="C4", label="vs best fixed plan")
    ax[1].set(title="Cumulative regret (full-information)", xlabel="records", ylabel="regret")
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(out / "cumulative.png", dpi=90)
    plt.close(fig)

    strategies = sorted({s for m in lines for qt in m["strategy_share"].values() for s in qt})
    qtypes = sorted({qt for m in lines for qt in m["strategy_share"]})
    fig, axes = plt.subplots(1, max(len(strategies), 1), figsize=(5.5 * max(len(strategies), 1), 4),
                             squeeze=False)
    for j, s in enumerate(strategies):
        a = axes[0, j]
        for qt in qtypes:
            ys = [m["strategy_share"].get(qt, {}).get(s, np.nan) for m in lines]
            a.plot(x, ys, marker=".", label=qt)
        a.set(title=f"share of queries using {s}", xlabel="records", ylabel="share", ylim=(-0.05, 1.05))
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "strategy_share.png", dpi=90)
    plt.close(fig)

    rows = []
    for m in lines:
        fi = m["full_information"]
        bf = m.get("bandit_feedback", {})
        rows.append([m["records"], m["policy_learning"], fi["chosen_plan_reward"],
                     fi["best_plan_in_hindsight_reward"], fi["clicked_recall_of_chosen_plan"] or float("nan"),
                     bf.get("logged_reward", float("nan")), bf.get("ips_value_of_replayed_policy", float("nan"))])
    log = summary["log"]
    problems = "".join(f"<li>{html.escape(k)}: {v} (e.g. {html.escape(log['examples'][k][0])})</li>"
                       for k, v in log["problems"].items())
    body = (f"<p>{summary['records']} records ({log['valid']} usable, {log['skipped']} skipped); "
            f"{summary['full_information_records']} taught the policy with full information, "
            f"{summary['bandit_feedback_records']} with bandit feedback; {summary['records_per_s']:.0f} "
            f"records/s.</p><p class='note'>{html.escape(summary['notes'])}</p>"
            + (f"<h2>Log problems</h2><ul>{problems}</ul>" if problems else "")
            + "<h2>Reward and regret</h2><img src='cumulative.png'>"
            "<h2>Strategy share per query type</h2><img src='strategy_share.png'>"
            "<h2>Per window</h2>"
            + _table(rows, ["records", "policy learning", "chosen reward (FI)", "best in hindsight (FI)",
                            "clicked recall (FI)", "logged reward (BF)", "IPS value (BF)"]))
    path = out / "report.html"
    path.write_text(_page("ltrr replay", body), encoding="utf-8")
    return path


def ope_report(out: str | os.PathLike, result: Mapping[str, Any],
               truth: Mapping[str, float] | None = None) -> Path:
    """Write ``out/report.html`` and ``out/estimates.png`` from an OPE result dict.

    ``result["policies"][name]["estimates"][estimator] = {"value", "ci_low", "ci_high", "status"}``;
    ``truth`` maps policy names to their true values when known (else ``result["truth"]``). The
    plot marks each policy's truth and draws the logged policy's value as a reference line;
    estimates that are not identifiable or unavailable are listed with their reason, not drawn.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    truth = dict(truth if truth is not None else result.get("truth") or {})
    plt = _pyplot()
    policies = list(result["policies"])
    estimators = sorted({e for p in policies for e in result["policies"][p]["estimates"]})

    def ok(e):
        return e is not None and e.get("status", "ok") == "ok" and e.get("value") is not None

    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(policies) * max(len(estimators), 1) / 3), 4.5))
    width = 0.8 / max(len(estimators), 1)
    for j, est in enumerate(estimators):
        xs, ys, lo, hi = [], [], [], []
        for i, p in enumerate(policies):
            e = result["policies"][p]["estimates"].get(est)
            if not ok(e):
                continue
            v = e["value"]
            xs.append(i - 0.4 + width * (j + 0.5))
            ys.append(v)
            lo.append(max(v - (e.get("ci_low") if e.get("ci_low") is not None else v), 0.0))
            hi.append(max((e.get("ci_high") if e.get("ci_high") is not None else v) - v, 0.0))
        if xs:
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o", capsize=3, label=est)
    logged = result.get("logged_value")
    if logged is not None:
        ax.axhline(logged, color="0.4", linestyle="--", linewidth=1, label="logged policy's value")
    for i, p in enumerate(policies):
        if p in truth:
            ax.hlines(truth[p], i - 0.45, i + 0.45, colors="k", linewidth=2,
                      label="ground truth" if not any(q in truth for q in policies[:i]) else None)
    level = int(round(100 * (1 - result.get("alpha", 0.05))))
    ax.set_xticks(range(len(policies)), policies, rotation=15)
    ax.set(ylabel="estimated value", title=f"Off-policy estimates ({level}% bootstrap intervals)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "estimates.png", dpi=90)
    plt.close(fig)
    nan = float("nan")
    rows = []
    for p in policies:
        for est in estimators:
            e = result["policies"][p]["estimates"].get(est)
            if e is None:
                continue
            if ok(e):
                rows.append([p, est, e["value"], e.get("ci_low", nan) if e.get("ci_low") is not None else nan,
                             e.get("ci_high", nan) if e.get("ci_high") is not None else nan,
                             truth.get(p, nan), "ok"])
            else:
                rows.append([p, est, e.get("status", ""), "", "", truth.get(p, nan), e.get("reason", "")])
    diag_rows, warn_items = [], []
    for p in policies:
        d = result["policies"][p].get("diagnostics", {})
        if d:
            diag_rows.append([p, d["effective_sample_size"], d["ess_fraction"], d["max_weight"],
                              d["mean_weight"], d["rounds_above_clip"], d["unsupported_mass"],
                              "yes" if d["deterministic_logger"] else "no"])
            warn_items += [f"<li><b>{html.escape(p)}</b>: {html.escape(w)}</li>" for w in d.get("warnings", [])]
    info = result.get("log", {})
    boot = result.get("bootstrap", {})
    model = result.get("reward_model", {})
    boot_text = (f"{boot.get('method', '?')} bootstrap, {boot.get('replicates', '?')} replicates, seed "
                 f"{boot.get('seed', '?')}" if isinstance(boot, Mapping) else f"{boot} replicates")
    body = (f"<p>Log: {html.escape(str(info.get('path', '')))} ({html.escape(str(info.get('format', 'ltrr')))}), "
            f"{info.get('valid', '?')} usable rounds of {info.get('records', '?')}. Logged policy's average "
            f"reward: {result.get('logged_value', nan):.4g} (dashed line).</p>"
            f"<p class='note'>Intervals: {html.escape(boot_text)}. Reward model (DM and the doubly robust "
            f"family): {html.escape(json.dumps(model, default=str)[:400])}. All numbers are bandit feedback: "
            "each estimate reweights logged rewards by the target's probability of the logged action over "
            "the logger's.</p>"
            + (f"<h2>Warnings</h2><ul>{''.join(warn_items)}</ul>" if warn_items else "")
            + "<img src='estimates.png'>"
            + _table(rows, ["policy", "estimator", "value", "CI low", "CI high", "ground truth", "status"])
            + "<h2>Importance-weight diagnostics</h2>"
            + _table(diag_rows, ["policy", "ESS", "ESS / rounds", "max weight", "mean weight",
                                 "rounds above clip", "target mass never logged", "deterministic logger"]))
    path = out / "report.html"
    path.write_text(_page("ltrr off-policy evaluation", body), encoding="utf-8")
    return path
