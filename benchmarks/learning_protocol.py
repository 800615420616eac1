"""Benchmark: does the default learned configuration win on human judgments? (issue 13 protocol)

The standard online learning-to-rank protocol on collections with human judgments (Cranfield,
CISI, any ``corpus.jsonl`` + ``queries.jsonl`` + ``qrels.txt`` directory): judged queries sampled
with replacement, clicks from PBM or cascade (perfect / navigational / informational presets)
over the judged grades, 3000 rounds, several seeds. The configuration under test is what
``ltrr simulate`` runs without ``--config`` (the default menu and policy, with the safe
incumbent), unless ``--config`` / ``--override`` say otherwise. Per (collection, click model,
preset, seed), in one process and on one query stream:

* ``learned`` — the configuration as a user gets it (its policy, ranker and incumbent);
* ``all_max`` — every strategy at its largest depth, ordered by the learned ranker (no gate);
* ``rrf_all_max`` — the same union ordered by reciprocal rank fusion (RRF of the menu);
* ``bm25_only`` / ``dense_only`` — each strategy alone in its own order (click-independent:
  run once per collection and seed, ``click_model = preset = "any"``).

One JSON line per (collection, click model, preset, seed, policy) with nDCG@10 over all rounds
and over the final window (last 500 rounds), mean candidates (all and final), and on the
``learned`` line the checks of the issue: ``margin`` = final nDCG minus the best of bm25_only,
dense_only and rrf_all_max; ``candidates_share`` of all_max's; ``ranker_minus_rrf`` on the
all-max union; ``worst_window_ratio`` = the smallest ratio of the learned page's nDCG to
rrf_all_max's over any 200-round window ending after round 500. Conditions (library versions,
threads, load at start and end, code version, config hash) on every line. ``--out FILE`` appends
and skips (collection, click model, preset, seed) groups already there under the same code
version and config hash (resume). ``--summary FILE`` prints the protocol table (mean over seeds,
[min, max]).

    python benchmarks/learning_protocol.py --collections cranfield,cisi --seeds 0,1,2 \
        --out runs/protocol.jsonl > runs/protocol.log 2>&1 &
    python benchmarks/learning_protocol.py --summary runs/protocol.jsonl
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # single-threaded native pools: a shared 2-core machine
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from learning import (  # noqa: E402
    add_protocol_arguments,
    code_version,
    collection_dir,
    conditions,
    dense_with_cached_vectors,
    done_groups,
    emit,
    merge_sections,
)

from ltrr.config import EngineConfig  # noqa: E402

SAFETY_WINDOW, SAFETY_FROM, FINAL = 200, 500, 500


def default_simulate_config(path: str | None, overrides: dict) -> EngineConfig:
    """``ltrr simulate``'s config (``--config`` or its default), with ``overrides`` merged per
    section (e.g. ``{"reward": {"latency_weight": 0.0001}}``)."""
    from simulators.cli import simulate_config

    return merge_sections(simulate_config(path) if path else simulate_config(None), overrides)


def worst_window_ratio(ours: np.ndarray, base: np.ndarray) -> float:
    """Smallest ratio of the two mean nDCGs over every window of 200 rounds ending after round 500."""
    def rolling(v: np.ndarray) -> np.ndarray:
        c = np.concatenate([[0.0], np.cumsum(np.nan_to_num(v, nan=0.0))])
        return (c[SAFETY_WINDOW:] - c[:-SAFETY_WINDOW]) / SAFETY_WINDOW

    a, b = rolling(ours), rolling(base)
    start = SAFETY_FROM - SAFETY_WINDOW + 1
    with np.errstate(divide="ignore", invalid="ignore"):
        r = a[start:] / b[start:]
    return float(np.nanmin(r)) if r.size else float("nan")


def run(config: EngineConfig, catalog, prebuilt, stream, label: str, click_model: str, preset: str,
        seed: int) -> tuple[dict, np.ndarray]:
    """One online run; returns its line fields and the per-round nDCG."""
    from ltrr.engine import Engine
    from simulators.environment import run_session
    from simulators.session import NO_INCUMBENT, deterministic, make_click_model

    strategies = {s.name: max(s.depths) for s in config.strategies}
    cfg = deterministic(config.model_copy(update={"seed": seed}))
    if label != "learned":
        cfg = cfg.model_copy(update={"incumbent": cfg.incumbent.model_copy(update=NO_INCUMBENT)})
    if label == "all_max":
        cfg = cfg.with_policy("fixed", {"depths": strategies})
    elif label == "rrf_all_max":
        cfg = cfg.with_policy("rrf", {"depths": strategies})
    elif label.endswith("_only"):
        cfg = cfg.with_policy("rrf", {"depths": {label[: -len("_only")]: strategies[label[: -len("_only")]]}})
    t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    engine = Engine.from_config(cfg, catalog=catalog, prebuilt={k: v.with_fresh_caches() for k, v in prebuilt.items()})
    res = run_session(engine, stream, make_click_model(click_model, preset), seed=seed, policy_name=label)
    engine.close()
    c1 = resource.getrusage(resource.RUSAGE_SELF)
    s = res.summary()
    line = {"ndcg@10": round(s["ndcg@10"], 5), "ndcg@10_final": round(float(np.nanmean(res.ndcg[-FINAL:])), 5),
            "mean_candidates": round(s["mean_candidates"], 2),
            "mean_candidates_final": round(float(res.n_candidates[-FINAL:].mean()), 2),
            "clicks_per_query": round(s["clicks_per_query"], 4),
            "strategy_share": {k: round(v, 3) for k, v in s["strategy_share"].items()},
            "mean_depths_final": {n: round(float(d), 1) for n, d in zip(res.strategies, res.depths[-FINAL:].mean(axis=0),
                                                                        strict=True)},
            "wall_s": round(time.perf_counter() - t0, 1),
            "cpu_s": round((c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime), 1)}
    for key in ("learned_ranking_share_final", "learned_plan_share_final"):
        if key in s:
            line[key] = round(s[key], 3)
    if res.switches:
        line["switches"] = [{k: sw[k] for k in ("component", "action", "round")} for sw in res.switches]
    return line, res.ndcg


def summary(paths: list[Path], label: str | None = None) -> None:
    """The protocol table: per (collection, click model, preset), mean over seeds of each
    policy's final-window nDCG@10 and of the checks, with [min, max] over seeds."""
    rows = [json.loads(x) for p in paths for x in p.read_text().splitlines() if x.strip()]
    if label is not None:
        rows = [r for r in rows if r.get("label", "") == label]
    static = {(r["collection"], r["seed"], r["policy"]): r for r in rows if r["click_model"] == "any"}
    groups: dict[tuple, dict[int, dict[str, dict]]] = {}
    for r in rows:
        if r["click_model"] != "any":
            groups.setdefault((r["collection"], r["click_model"], r["preset"]), {}).setdefault(r["seed"], {})[r["policy"]] = r
    head = ("| collection | clicks | preset | seeds | learned final | cands share | bm25 | dense | RRF menu | "
            "margin [min, max] | all_max − RRF [min, max] | worst window ratio | ranker promoted |")
    print(head)
    print("|" + "|".join(["---"] * (head.count("|") - 1)) + "|")
    fails = {"a": 0, "b": 0, "c": 0}
    for (coll, cm, preset), by_seed in sorted(groups.items()):
        seeds = sorted(s for s, pol in by_seed.items() if "learned" in pol)
        if not seeds:
            continue
        learned = [by_seed[s]["learned"] for s in seeds]

        def mean(vals: list[float]) -> float:
            return float(np.mean(vals))

        def span(vals: list[float]) -> str:
            return f"{mean(vals):+.4f} [{min(vals):+.4f}, {max(vals):+.4f}]"

        fin = [r["ndcg@10_final"] for r in learned]
        bm = [static[(coll, s, "bm25_only")]["ndcg@10_final"] for s in seeds if (coll, s, "bm25_only") in static]
        de = [static[(coll, s, "dense_only")]["ndcg@10_final"] for s in seeds if (coll, s, "dense_only") in static]
        rrf = [by_seed[s]["rrf_all_max"]["ndcg@10_final"] for s in seeds]
        margin = [r["margin"] for r in learned]
        share = [r["candidates_share"] for r in learned]
        rank = [r["ranker_minus_rrf"] for r in learned]
        worst = [r["worst_window_ratio"] for r in learned]
        promoted = sum(1 for r in learned if r.get("learned_ranking_share_final", 0) > 0.5)
        ok_a = mean(margin) >= 0.01 and mean(share) <= 0.6
        fails["a"] += not ok_a
        fails["b"] += mean(rank) < 0
        fails["c"] += min(worst) < 0.97
        print(f"| {coll} | {cm} | {preset} | {len(seeds)} | {mean(fin):.4f} | {mean(share):.2f} | "
              f"{mean(bm):.4f} | {mean(de):.4f} | {mean(rrf):.4f} | {span(margin)}{'' if ok_a else ' ✗'} | "
              f"{span(rank)} | {min(worst):.3f}{'' if min(worst) >= 0.97 else ' ✗'} | {promoted}/{len(seeds)} |")
    print(f"\nsettings failing: (a) {fails['a']}, (b) {fails['b']}, (c) {fails['c']}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_protocol_arguments(ap)
    ap.add_argument("--config", default=None, help="Engine config (default: `ltrr simulate`'s default).")
    ap.add_argument("--override", default="{}", help="JSON merged into the config per section (ablations).")
    ap.add_argument("--label", default="", help="Free text recorded on every line (e.g. the ablation).")
    ap.add_argument("--cache", default=str(ROOT / "runs" / "cache"), help="Dense vector cache directory.")
    ap.add_argument("--out", default=None, help="Append lines here too; skip groups already there.")
    ap.add_argument("--summary", nargs="+", default=None, help="Print the protocol table of results files.")
    ap.add_argument("--summary-label", default=None, help="Only lines with this label in the table.")
    args = ap.parse_args(argv)
    if args.summary:
        summary([Path(p) for p in args.summary], args.summary_label)
        return
    from simulators.collections import IRCollection

    base = default_simulate_config(args.config, json.loads(args.override))
    config_hash = hashlib.sha1(json.dumps([base.model_dump(mode="json"), args.rounds], sort_keys=True,
                                          default=str).encode()).hexdigest()[:12]
    version = code_version()
    out = Path(args.out) if args.out else None
    done = done_groups(out, version, config_hash)
    cond = conditions(1)

    for coll_name in args.collections.split(","):
        d = collection_dir(coll_name)
        coll = IRCollection.load_dir(d)
        config = base.model_copy(update={"catalog": base.catalog.model_copy(update={"path": str(d / "corpus.jsonl"),
                                                                                     "limit": None})})
        prebuilt = dense_with_cached_vectors(config, coll.catalog, Path(args.cache))
        names = [s.name for s in config.strategies]
        for seed in [int(s) for s in args.seeds.split(",")]:
            stream = coll.stream(args.rounds, seed)
            common = {"bench": "learning_protocol", "collection": coll_name, "seed": seed, "rounds": args.rounds,
                      "docs": len(coll.catalog), "judged_queries": len(coll.judged()), "label": args.label,
                      "strategies": names, "code_version": version, "config_hash": config_hash, **cond}
            static: dict[str, dict] = {}
            for s in ("bm25", "dense"):
                if s not in names:
                    continue
                key = (coll_name, "any", "any", seed, f"{s}_only")
                load0 = os.getloadavg()
                fields, _ = run(config, coll.catalog, prebuilt, stream, f"{s}_only", "pbm", "informational", seed)
                static[f"{s}_only"] = fields
                if key not in done:
                    emit({**common, "click_model": "any", "preset": "any", "policy": f"{s}_only", **fields,
                          "load_start": [round(v, 2) for v in load0],
                          "load_end": [round(v, 2) for v in os.getloadavg()]}, out)
            for cm in args.click_models.split(","):
                for preset in args.presets.split(","):
                    if (coll_name, cm, preset, seed, "learned") in done:
                        continue
                    load0 = os.getloadavg()
                    lines, curves = {}, {}
                    for label in ("rrf_all_max", "all_max", "learned"):
                        lines[label], curves[label] = run(config, coll.catalog, prebuilt, stream, label, cm, preset, seed)
                    best = max([lines["rrf_all_max"]["ndcg@10_final"]] + [f["ndcg@10_final"] for f in static.values()])
                    lr = lines["learned"]
                    lr["margin"] = round(lr["ndcg@10_final"] - best, 5)
                    lr["candidates_share"] = round(lr["mean_candidates_final"] / lines["all_max"]["mean_candidates"], 4)
                    lr["ranker_minus_rrf"] = round(lines["all_max"]["ndcg@10_final"]
                                                   - lines["rrf_all_max"]["ndcg@10_final"], 5)
                    lr["worst_window_ratio"] = round(worst_window_ratio(curves["learned"], curves["rrf_all_max"]), 4)
                    load1 = [round(v, 2) for v in os.getloadavg()]
                    for label, fields in lines.items():
                        emit({**common, "click_model": cm, "preset": preset, "policy": label, **fields,
                              "load_start": [round(v, 2) for v in load0], "load_end": load1}, out)


if __name__ == "__main__":
    main()
