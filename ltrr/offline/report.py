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

from ltrr.reporting import html_page, html_table, pyplot

_pyplot = pyplot
_table = html_table
_page = html_page


def _constant(values: np.ndarray) -> bool:
    """True when a series holds one value (NaNs aside): a panel of it would be a flat line."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return v.size == 0 or bool(np.allclose(v, v[0], rtol=0, atol=1e-12))


def _small_multiples(plt, panels: list[tuple[str, np.ndarray, np.ndarray, str]], xlabel: str,
                     ncols: int = 3, sharey: bool = False, ylim: tuple[float, float] | None = None):
    """One line per panel (``(title, x, y, ylabel)``), panels in rows of ``ncols``."""
    n = len(panels)
    cols = min(ncols, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.9 * cols, 2.9 * rows), squeeze=False, sharex=True,
                             sharey=sharey)
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.set_visible(False)
            continue
        title, x, y, ylabel = panels[k]
        ax.plot(x, y, color="C0", lw=1.6, marker="." if len(x) <= 40 else None)
        ax.set_title(title, fontsize=9.5)
        if k % cols == 0 or not sharey:
            ax.set_ylabel(ylabel, fontsize=9)
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel(xlabel)
    fig.tight_layout()
    return fig


def _drop_empty_columns(rows: list[list[Any]], head: list[str]) -> tuple[list[list[Any]], list[str]]:
    """The table without the columns that are NaN on every row (e.g. bandit-feedback numbers of a
    log without propensities)."""
    keep = [j for j in range(len(head))
            if not all(isinstance(r[j], float) and np.isnan(r[j]) for r in rows)] if rows else list(range(len(head)))
    return [[r[j] for j in keep] for r in rows], [head[j] for j in keep]


def replay_report(out: str | os.PathLike) -> Path:
    """Write ``out/report.html`` with ``cumulative.png`` and ``strategy_share.png``.

    Small multiples, one line per panel: the chosen plan's reward per window and its cumulative
    regret against the best plan per record and against the best fixed plan (one panel when the
    two are the same); each strategy's share of queries per query type, leaving out strategies
    whose share never changes (named in a note instead of drawn as flat lines).
    """
    out = Path(out)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    summary = json.loads((out / "summary.json").read_text())
    plt = _pyplot()
    notes: list[str] = []
    x = np.array([m["records"] for m in lines], dtype=float)
    fi = [m["full_information"] for m in lines]
    chosen = np.array([f["chosen_plan_reward"] for f in fi], dtype=float)
    best = np.array([f["best_plan_in_hindsight_reward"] for f in fi], dtype=float)
    regret = np.array([f["cumulative_regret"] for f in fi], dtype=float)
    regret_fixed = np.array([f.get("cumulative_regret_vs_best_fixed_plan", np.nan) for f in fi], dtype=float)
    panels = [("reward of the chosen plan (window mean)", x, chosen, "reward per record"),
              ("best plan per record minus chosen (window mean)", x, best - chosen, "reward per record")]
    if np.allclose(regret, regret_fixed, equal_nan=False):
        panels.append(("cumulative regret vs the best plan per record\n(= vs the best fixed plan)", x, regret,
                       "regret"))
    else:
        panels += [("cumulative regret vs the best plan per record", x, regret, "regret"),
                   ("cumulative regret vs the best fixed plan", x, regret_fixed, "regret")]
    kept = []
    for p in panels:
        if _constant(p[2]):
            notes.append(f"{p[0].splitlines()[0]}: {np.nanmax(p[2]):.4g} throughout (not drawn)")
        else:
            kept.append(p)
    if kept:
        fig = _small_multiples(plt, kept, "records", ncols=len(kept) if len(kept) <= 4 else 3)
        fig.savefig(out / "cumulative.png", dpi=90)
        plt.close(fig)

    strategies = sorted({s for m in lines for qt in m["strategy_share"].values() for s in qt})
    qtypes = sorted({qt for m in lines for qt in m["strategy_share"]})
    share = {(s, qt): np.array([m["strategy_share"].get(qt, {}).get(s, np.nan) for m in lines], dtype=float)
             for s in strategies for qt in qtypes}
    varying = []
    for s in strategies:
        if all(_constant(share[s, qt]) for qt in qtypes) and _constant(np.concatenate([share[s, qt] for qt in qtypes])):
            v = np.concatenate([share[s, qt] for qt in qtypes])
            v = v[np.isfinite(v)]
            notes.append(f"{s}: share {v[0] if v.size else float('nan'):.3g} on every query type and window (not drawn)")
        else:
            varying.append(s)
    share_panels = [(f"{s} · {qt}" if len(varying) > 1 else qt, x, share[s, qt], f"share using {s}")
                    for s in varying for qt in qtypes if not _constant(share[s, qt])]
    for s in varying:
        for qt in qtypes:
            if _constant(share[s, qt]) and np.isfinite(share[s, qt]).any():
                notes.append(f"{s} on {qt} queries: share {np.nanmax(share[s, qt]):.3g} throughout (not drawn)")
    if share_panels:
        fig = _small_multiples(plt, share_panels, "records", ncols=3, sharey=True, ylim=(-0.03, 1.03))
        fig.savefig(out / "strategy_share.png", dpi=90)
        plt.close(fig)

    rows = []
    for m in lines:
        f = m["full_information"]
        bf = m.get("bandit_feedback", {})
        rows.append([m["records"], m["policy_learning"], f["chosen_plan_reward"],
                     f["best_plan_in_hindsight_reward"], f["clicked_recall_of_chosen_plan"] or float("nan"),
                     bf.get("logged_reward", float("nan")), bf.get("ips_value_of_replayed_policy", float("nan"))])
    log = summary["log"]
    problems = "".join(f"<li>{html.escape(k)}: {v} (e.g. {html.escape(log['examples'][k][0])})</li>"
                       for k, v in log["problems"].items())
    note_html = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    share_title = (f"Share of queries using {varying[0]}, per query type" if len(varying) == 1
                   else "Strategy share per query type")
    body = (f"<p>{summary['records']} records ({log['valid']} usable, {log['skipped']} skipped); "
            f"{summary['full_information_records']} taught the policy with full information, "
            f"{summary['bandit_feedback_records']} with bandit feedback; {summary['records_per_s']:.0f} "
            f"records/s. Windows of {lines[0]['window_records'] if lines else 0} records.</p>"
            f"<p class='note'>{html.escape(summary['notes'])}</p>"
            + (f"<h2>Log problems</h2><ul>{problems}</ul>" if problems else "")
            + ("<h2>Reward and regret (full-information)</h2><img src='cumulative.png'>" if kept else "")
            + (f"<h2>{html.escape(share_title)}</h2><img src='strategy_share.png'>" if share_panels else "")
            + (f"<h2>Not drawn (constant)</h2><ul class='note'>{note_html}</ul>" if notes else "")
            + "<h2>Per window</h2>"
            + _table(*_drop_empty_columns(rows, ["records", "policy learning", "chosen reward (FI)",
                                                 "best in hindsight (FI)", "clicked recall (FI)",
                                                 "logged reward (BF)", "IPS value (BF)"])))
    path = out / "report.html"
    path.write_text(_page("ltrr replay", body), encoding="utf-8")
    return path


def _estimates_figure(plt, result: Mapping[str, Any], truth: Mapping[str, float], ok) -> Any:
    """Forest plots, one panel per target policy (small multiples sharing the value axis):
    estimators down the side, each estimate a point with its interval; the logged policy's value
    (dashed) and the policy's ground truth (solid, when known) as vertical lines; the legend
    below the panels, never over the data. None when no estimate can be drawn."""
    policies = [p for p in result["policies"]
                if any(ok(e) for e in result["policies"][p]["estimates"].values())]
    if not policies:
        return None
    estimators = sorted({e for p in policies for e, v in result["policies"][p]["estimates"].items() if ok(v)})
    cols = min(len(policies), 3)
    rows = -(-len(policies) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 0.32 * len(estimators) * rows + 1.6 * rows),
                             squeeze=False, sharex=True, sharey=True)
    logged = result.get("logged_value")
    level = int(round(100 * (1 - result.get("alpha", 0.05))))
    for k, ax in enumerate(axes.flat):
        if k >= len(policies):
            ax.set_visible(False)
            continue
        p = policies[k]
        for i, est in enumerate(estimators):
            e = result["policies"][p]["estimates"].get(est)
            if not ok(e):
                continue
            v = e["value"]
            lo = e.get("ci_low") if e.get("ci_low") is not None else v
            hi = e.get("ci_high") if e.get("ci_high") is not None else v
            ax.plot([lo, hi], [i, i], color="C0", lw=2.2, solid_capstyle="butt")
            ax.plot([v], [i], "o", color="C0", ms=5)
        if logged is not None:
            ax.axvline(logged, color="0.35", ls="--", lw=1)
        if p in truth:
            ax.axvline(truth[p], color="k", ls="-", lw=1.6)
        ax.set_title(p, fontsize=10)
        ax.set_yticks(range(len(estimators)), estimators)
        ax.set_ylim(len(estimators) - 0.5, -0.5)
        ax.grid(axis="x", alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel(f"estimated value ({level}% bootstrap interval)")
    handles = [plt.Line2D([], [], color="C0", marker="o", lw=2.2, label=f"estimate and {level}% interval")]
    if logged is not None:
        handles.append(plt.Line2D([], [], color="0.35", ls="--", lw=1, label="logged policy's average reward"))
    if any(p in truth for p in policies):
        handles.append(plt.Line2D([], [], color="k", lw=1.6, label="ground truth (on-policy)"))
    fig.tight_layout()
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(handles),
               frameon=False, fontsize=8.5)
    return fig


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

    fig = _estimates_figure(plt, result, truth, ok)
    if fig is not None:
        fig.savefig(out / "estimates.png", dpi=90, bbox_inches="tight")
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
            + ("<img src='estimates.png'>" if fig is not None else
               "<p>No estimate can be drawn: every one is unavailable or not identifiable (see the table).</p>")
            + _table(*_drop_empty_columns(rows, ["policy", "estimator", "value", "CI low", "CI high",
                                                 "ground truth", "status"]))
            + "<h2>Importance-weight diagnostics</h2>"
            + _table(diag_rows, ["policy", "ESS", "ESS / rounds", "max weight", "mean weight",
                                 "rounds above clip", "target mass never logged", "deterministic logger"]))
    path = out / "report.html"
    path.write_text(_page("ltrr off-policy evaluation", body), encoding="utf-8")
    return path
