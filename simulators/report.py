"""The learning-curve report of ``ltrr simulate`` and ``ltrr demo``: ``report.html`` with PNGs.

* ``ndcg.png``: nDCG@10 over rounds, one small panel per policy (its mean over seeds as a line, the
  range over seeds as a band), the RRF baseline as a grey reference in every panel, and the
  incumbent's switches marked where they happened;
* ``plans.png``: for each adaptive policy, the share of rounds each strategy ran and the
  candidates drawn over time (strategies that ran on every round are named, not drawn);
* ``latency.png``: mean milliseconds per stage of a search, per policy;
* tables: per-policy means over seeds (final window too), the learning checks, every switch.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ltrr.reporting import LINE_STYLES, figure_png, html_page, html_table, pyplot
from simulators.environment import SessionResult

BASELINE = "rrf_all_max"
#: ranker switches are marked on the curves; the plan gate's (which may alternate often, as a
#: conservative bandit does) are drawn as the share of learned plans in plans.png
SWITCH_STYLE = {("ranker", "promote"): ("tab:green", "-"), ("ranker", "demote"): ("tab:red", "-")}


def smoothing_window(n: int) -> int:
    return max(20, min(200, n // 15))


def _rolling(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` rounds (shorter at the start), one value per round."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
    c = np.concatenate([[0.0], np.cumsum(v)])
    idx = np.arange(1, v.size + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def _curves(runs: Mapping[int, Sequence[SessionResult]], policy: str, attr: str, window: int) -> np.ndarray:
    """``float[seeds, rounds]`` trailing means of a per-round array of ``policy``'s runs."""
    rows = [_rolling(getattr(r, attr), window) for results in runs.values() for r in results if r.policy == policy]
    return np.vstack(rows) if rows else np.empty((0, 0))


def ndcg_figure(runs: Mapping[int, Sequence[SessionResult]], policies: Sequence[str]) -> bytes:
    plt = pyplot()
    n_rounds = len(next(iter(runs.values()))[0].ndcg)
    window = smoothing_window(n_rounds)
    cols = min(3, len(policies))
    rows = math.ceil(len(policies) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), sharex=True, sharey=True,
                             squeeze=False)
    x = np.arange(1, n_rounds + 1)
    base = _curves(runs, BASELINE, "ndcg", window)
    handles: dict[str, Any] = {}
    for ax, name in zip(axes.flat, policies, strict=False):
        curves = _curves(runs, name, "ndcg", window)
        if base.size and name != BASELINE:
            (h,) = ax.plot(x, base.mean(axis=0), color="0.55", ls="--", lw=1.0)
            handles["RRF of the menu (the incumbent's baseline)"] = h
        ax.fill_between(x, curves.min(axis=0), curves.max(axis=0), color="tab:blue", alpha=0.18, lw=0)
        (h,) = ax.plot(x, curves.mean(axis=0), color="tab:blue", lw=1.4)
        handles["policy: mean over seeds (band: range)"] = h
        for results in runs.values():
            for r in results:
                if r.policy != name:
                    continue
                for s in r.switches:
                    style = SWITCH_STYLE.get((s["component"], s["action"]))
                    if style is None:
                        continue
                    h = ax.axvline(s["round"], color=style[0], ls=style[1], lw=0.9, alpha=0.8)
                    handles[f"learned ranker {s['action']}d"] = h
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(policies):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("round")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"nDCG@10 (mean of {window})")
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=3, frameon=False,
               bbox_to_anchor=(0.5, -0.02 - 0.04 * math.ceil(len(handles) / 3)))
    fig.tight_layout()
    return figure_png(fig)


def plans_figure(runs: Mapping[int, Sequence[SessionResult]], adaptive: Sequence[str]) -> tuple[bytes | None, list[str]]:
    """Strategy shares and candidates over time of the adaptive policies; also the notes on
    strategies left out because they ran on every round (or never)."""
    plt = pyplot()
    first = next(iter(runs.values()))
    n_rounds = len(first[0].ndcg)
    window = smoothing_window(n_rounds)
    strategies = first[0].strategies
    notes: list[str] = []
    panels = []
    for name in adaptive:
        res = [r for results in runs.values() for r in results if r.policy == name]
        if not res:
            continue
        share = np.stack([(r.depths > 0).astype(float) for r in res])  # [seeds, rounds, S]
        varying = []
        for s, strat in enumerate(strategies):
            col = share[:, :, s]
            if np.all(col == col.flat[0]):
                notes.append(f"{name}: {strat} {'ran on every round' if col.flat[0] else 'never ran'}")
            else:
                varying.append(s)
        learned = np.stack([(r.plan_source == "learned").astype(float) for r in res])
        if not learned.any() and not varying:
            notes.append(f"{name}: the baseline plan served every round")
        panels.append((name, res, share, varying, learned))
    if not panels:
        return None, notes
    # a panel of strategy shares only where something varies (no flat or empty panels)
    with_share = any(varying or learned.any() for _, _, _, varying, learned in panels)
    fig, axes = plt.subplots(len(panels), 2 if with_share else 1, figsize=(11 if with_share else 7, 2.8 * len(panels)),
                             sharex=True, squeeze=False)
    x = np.arange(1, n_rounds + 1)
    for (name, res, share, varying, learned), row in zip(panels, axes, strict=True):
        ax_s, ax_c = (row[0], row[1]) if with_share else (None, row[0])
        if ax_s is not None and not (varying or learned.any()):
            ax_s.set_visible(False)
        elif ax_s is not None:
            for i, s in enumerate(varying):
                curves = np.vstack([_rolling(share[k, :, s], window) for k in range(share.shape[0])])
                ax_s.plot(x, curves.mean(axis=0), ls=LINE_STYLES[i % len(LINE_STYLES)], lw=1.4,
                          label=strategies[s])
            if learned.any():
                curves = np.vstack([_rolling(row_, window) for row_ in learned])
                ax_s.plot(x, curves.mean(axis=0), color="k", lw=1.0, ls=(0, (1, 1)),
                          label="learned plan (not the baseline's)")
            ax_s.set_ylim(-0.02, 1.02)
            ax_s.set_ylabel("share of rounds")
            ax_s.set_title(f"{name}: strategies run", fontsize=10)
            ax_s.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
            ax_s.grid(alpha=0.3)
        curves = np.vstack([_rolling(r.n_candidates, window) for r in res])
        ax_c.fill_between(x, curves.min(axis=0), curves.max(axis=0), color="tab:purple", alpha=0.18, lw=0)
        ax_c.plot(x, curves.mean(axis=0), color="tab:purple", lw=1.4)
        ax_c.set_ylabel("candidates drawn")
        ax_c.set_title(f"{name}: candidates (mean of {window}; band: range over seeds)", fontsize=10)
        ax_c.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("round")
    fig.tight_layout()
    return figure_png(fig), notes


def latency_figure(runs: Mapping[int, Sequence[SessionResult]], policies: Sequence[str]) -> bytes:
    plt = pyplot()
    stages: list[str] = []
    means: dict[str, dict[str, float]] = {}
    for name in policies:
        res = [r for results in runs.values() for r in results if r.policy == name]
        per = {}
        for stage in sorted({k for r in res for k in r.stage_ms}):
            per[stage] = float(np.mean([r.stage_ms[stage].mean() for r in res if stage in r.stage_ms]))
            if stage not in stages:
                stages.append(stage)
        means[name] = per
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(policies) + 1.4))
    left = np.zeros(len(policies))
    cmap = plt.get_cmap("tab20")
    for i, stage in enumerate(stages):
        vals = np.array([means[p].get(stage, 0.0) for p in policies])
        ax.barh(policies, vals, left=left, color=cmap(i % 20), label=stage, hatch="//" if i % 2 else None,
                edgecolor="white", lw=0.3)
        left += vals
    ax.invert_yaxis()
    ax.set_xlabel("mean ms per search (stacked by stage)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return figure_png(fig)


def write_learning_report(out: str | Path, runs: Mapping[int, Sequence[SessionResult]],
                          report: Mapping[str, Any], title: str) -> Path:
    """Write ``out/report.html`` and its PNGs for :func:`simulators.session.compare_over_seeds`
    results; returns the HTML path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    policies = list(report["policies"])
    adaptive = [p for p in policies if p not in (BASELINE, "all_max") and not p.endswith("_only")]
    flat = [p for p in policies if all(np.all(r.ndcg == r.ndcg[0]) for rs in runs.values() for r in rs
                                       if r.policy == p)]
    (out / "ndcg.png").write_bytes(ndcg_figure(runs, [p for p in policies if p not in flat]))
    plans_png, notes = plans_figure(runs, adaptive)
    if plans_png is not None:
        (out / "plans.png").write_bytes(plans_png)
    (out / "latency.png").write_bytes(latency_figure(runs, policies))
    seeds = report.get("seeds", [])
    rows = []
    for name, s in report["policies"].items():
        rows.append([name, s["ndcg@10"], s.get("ndcg@10_final", float("nan")), s.get("ndcg@10_final_sd", 0.0),
                     s["mean_candidates"], s.get("mean_candidates_final", float("nan")), s["clicks_per_query"],
                     s["latency_p50_ms"], s["latency_p99_ms"]])
    body = [f"<p class='note'>{html.escape(str(report.get('notes', '')))} Click model "
            f"{html.escape(str(report['click_model']))}; {report['queries']} rounds per run; "
            f"seeds {seeds}; final window = last {next(iter(report['policies'].values())).get('final_window')} "
            "rounds.</p>",
            "<h2>Policies (means over seeds)</h2>",
            html_table(rows, ["policy", "nDCG@10", "final nDCG@10", "final sd", "candidates",
                              "final candidates", "clicks/q", "p50 ms", "p99 ms"])]
    checks = report.get("checks") or {}
    if checks:
        body += ["<h2>Learning checks</h2>",
                 html_table([[k, v] for k, v in checks.items()], ["check", "value"])]
    body += ["<h2>nDCG@10 over rounds</h2><img src='ndcg.png' alt='nDCG@10 over rounds per policy'>"]
    if plans_png is not None:
        body += ["<h2>Plans over rounds</h2><img src='plans.png' alt='strategy shares and candidates over rounds'>"]
    notes += [f"{p}: nDCG@10 constant ({report['policies'][p]['ndcg@10']:.3f}), not drawn" for p in flat]
    if notes:
        body += ["<p class='note'>" + html.escape("; ".join(notes)) + ".</p>"]
    body += ["<h2>Latency per stage</h2><img src='latency.png' alt='mean latency per stage'>"]
    switch_rows = []
    for seed, results in runs.items():
        for r in results:
            for s in r.switches:
                ev = ", ".join(f"{k}={v}" for k, v in s.get("evidence", {}).items())
                switch_rows.append([seed, r.policy, s["component"], s["action"], s["round"], ev])
    body += ["<h2>Incumbent switches</h2>",
             html_table(switch_rows, ["seed", "policy", "component", "action", "round", "evidence"])
             if switch_rows else "<p>None: every run served what it started with.</p>"]
    path = out / "report.html"
    path.write_text(html_page(title, "\n".join(body)), encoding="utf-8")
    return path
