"""Benchmark: where the learned configuration loses to all-at-max on the movie stream.

``ltrr demo`` shows the learned configuration (LinUCB plans, the learned ranker, the safe
incumbent) below ``all_max`` (every strategy at its largest depth, ordered by a ranker learned from
its own pages). Two causes are possible: the policy's plans leave good candidates out, or what
the configuration *learned* (its ranker and click memory, trained on its own pages) is worse.
This benchmark separates them. It runs the demo's stream (``MovieQueryGenerator``, pool
``queries / 4``, PBM clicks) through one engine with ``--config`` (default: the demo config),
then, learning nothing more, measures on the last 500 queries of the stream:

* ``own_page`` — the engine's own page (its plans, its ranking);
* ``ranker_on_all_max`` — the engine's ranker on the all-at-max union (its plans taken out);
* ``rrf_on_all_max`` — RRF of the all-at-max union (its click memory's contribution).

``--fixed`` runs the all-at-max engine instead (fixed policy, no incumbent gates): the reference.
One JSON line with the conditions. Same seed, same numbers.

    .venv/bin/python benchmarks/movie_gap.py --queries 2000
    .venv/bin/python benchmarks/movie_gap.py --queries 2000 --fixed
    .venv/bin/python benchmarks/movie_gap.py --queries 2000 --override '{"incumbent": {"gate_ranking": false, "gate_plans": false}}'
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from learning import code_version, conditions, merge_sections  # noqa: E402

EVAL = 500


def page_ndcg(page: np.ndarray, relevant: dict[int, float], k: int = 10) -> float:
    from ltrr.offline.metrics import ndcg_from_grades

    grades = np.full((1, k), np.nan)
    g = [relevant.get(int(r), 0) for r in page[:k]]
    grades[0, : len(g)] = g
    return float(ndcg_from_grades(grades, np.array([list(relevant.values())], dtype=float), k)[0])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "demo.toml"), help="engine config (TOML)")
    ap.add_argument("--queries", type=int, default=2000, help="queries in the stream (> 500)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fixed", action="store_true", help="the all-at-max engine (no gates) instead")
    ap.add_argument("--override", default="{}", help="JSON merged into the config per section")
    args = ap.parse_args(argv)
    if args.queries <= EVAL:
        ap.error(f"--queries must be > {EVAL}; got {args.queries}")

    from ltrr.catalog import Catalog
    from ltrr.engine import Engine
    from ltrr.ranking.fusion import FusionSpec, fuse
    from ltrr.types import QueryBatch
    from simulators.cli import load_engine_config
    from simulators.environment import run_session
    from simulators.movies import MovieQueryGenerator
    from simulators.session import NO_INCUMBENT, deterministic, make_click_model

    cfg = merge_sections(deterministic(load_engine_config(args.config)), json.loads(args.override))
    if args.fixed:
        cfg = cfg.with_policy("fixed", {})
        cfg = cfg.model_copy(update={"incumbent": cfg.incumbent.model_copy(update=NO_INCUMBENT)})
    catalog = Catalog.from_jsonl(cfg.catalog.path, limit=cfg.catalog.limit)
    stream = MovieQueryGenerator(catalog, seed=args.seed).stream(args.queries, args.queries // 4, seed=args.seed)
    t0, c0, load_start = time.perf_counter(), time.process_time(), os.getloadavg()
    engine = Engine.from_config(cfg, catalog=catalog)
    res = run_session(engine, stream, make_click_model("pbm", "navigational"), seed=args.seed)
    menu = engine.policy.menu
    max_depths = tuple(int(d) for d in menu.plans.max(axis=0))
    rrf = FusionSpec("rrf", cfg.incumbent.rrf_k)
    own, ranked, fused, cands = [], [], [], []
    for q in stream[-EVAL:]:
        d = engine.search(q.text, {}, k=10)
        own.append(page_ndcg(d.page, q.relevant))
        cands.append(len(d.candidates))
        batch = QueryBatch((q.text,))
        union = engine.retrieve_union(batch, menu.strategies, max_depths)
        order = np.arange(len(union))
        s = engine.ranker.score(engine.build_features(batch, union)) if engine.ranker.is_fitted else fuse(union, rrf)
        ranked.append(page_ndcg(union.items[np.lexsort((order, -s))[:10]], q.relevant))
        f = fuse(union, rrf)
        fused.append(page_ndcg(union.items[np.lexsort((order, -f))[:10]], q.relevant))
    line = {
        "bench": "movie_gap", "config": args.config, "override": json.loads(args.override), "fixed": args.fixed,
        "queries": args.queries, "seed": args.seed, "eval_queries": EVAL, "code_version": code_version(),
        "session_ndcg@10_final": round(float(np.nanmean(res.ndcg[-EVAL:])), 5),
        "own_page": round(float(np.nanmean(own)), 5), "own_candidates": round(float(np.mean(cands)), 1),
        "ranker_on_all_max": round(float(np.nanmean(ranked)), 5),
        "rrf_on_all_max": round(float(np.nanmean(fused)), 5),
        "ranking_serving": engine.incumbent.ranker.serving,
        "switches": [(w["component"], w["action"], w["round"]) for w in engine.incumbent.switches],
        "wall_s": round(time.perf_counter() - t0, 1), "cpu_s": round(time.process_time() - c0, 1),
        "load_start": [round(x, 2) for x in load_start], "load_end": [round(x, 2) for x in os.getloadavg()],
        **conditions(1),
    }
    engine.close()
    print(json.dumps(line))


if __name__ == "__main__":
    main()
