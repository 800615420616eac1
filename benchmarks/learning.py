"""Benchmark: does the ranker learned from the engine's own clicks beat rank fusion?

The standard online learning-to-rank protocol on collections with human judgments (Cranfield,
CISI, any ``corpus.jsonl`` + ``queries.jsonl`` + ``qrels.txt`` directory): judged queries are
sampled with replacement (:meth:`simulators.collections.IRCollection.stream`), clicks come from a
click model (PBM or cascade; perfect / navigational / informational presets) over the judged
grades, and each policy runs online through a fresh :class:`ltrr.engine.Engine` built from
``--config`` (default ``configs/ir_bm25_dense.toml``: BM25 and dense, depths 0-100). Policies:

* ``all_max`` — every strategy at its largest depth, page ordered by the learned ranker (which
  retrains from the clicks on its own pages);
* ``rrf_all_max`` — the same union ordered by reciprocal rank fusion (nothing learned);
* ``<s>_only`` — strategy ``s`` alone at its largest depth, ordered by the learned ranker;
* ``<s>_static`` — strategy ``s`` alone in its own order (RRF of one list).

A fusion run's pages do not depend on clicks, so ``rrf_all_max`` and ``<s>_static`` run once per
(collection, seed) and their line carries ``click_model = preset = "any"``.

One JSON line per (collection, click model, preset, seed, policy): nDCG@10 over all rounds, over
the second half and over the last 500 rounds, mean candidates, clicks per query, wall and CPU
seconds, and the conditions (library versions, thread settings, load average at start and end,
code version, config hash). ``--out FILE`` appends the lines to FILE as well and skips the
combinations already there under the same code version and config hash (resume).
``--ranker-params JSON`` overrides the ranker's parameters (ablations); ``--summary FILE...``
prints all_max vs rrf_all_max and ``<s>_only`` vs ``<s>_static`` per setting and label (mean over
seeds, smallest and largest per-seed difference) from results files.

    .venv/bin/python benchmarks/learning.py --collections cranfield --click-models pbm \
        --presets informational --seeds 0,1,2 --out runs/learning.jsonl
    .venv/bin/python benchmarks/learning.py --summary runs/before.jsonl runs/learning.jsonl
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

from benchmarks.conditions import code_version  # noqa: E402
from ltrr.config import DATA_DIR, SHARED_DATA_DIR, EngineConfig, load_config, parse_config  # noqa: E402


def collection_dir(name: str) -> Path:
    """A collection by name (``data/<name>`` or the shared ``ir/<name>``) or by path."""
    for d in (Path(name), DATA_DIR / name, SHARED_DATA_DIR / "ir" / name):
        if (d / "corpus.jsonl").exists():
            return d
    raise SystemExit(f"no collection {name!r}: looked for corpus.jsonl in {name}, {DATA_DIR / name}, "
                     f"{SHARED_DATA_DIR / 'ir' / name}")


def conditions(ranker_threads: int) -> dict:
    import faiss
    import lightgbm
    import scipy
    import torch

    return {"numpy": np.__version__, "scipy": scipy.__version__, "faiss": faiss.__version__,
            "torch": torch.__version__, "lightgbm": lightgbm.__version__,
            "threads": {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
                        "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS"),
                        "torch": torch.get_num_threads(), "faiss": faiss.omp_get_max_threads(),
                        "lightgbm": ranker_threads}}


def dense_with_cached_vectors(config: EngineConfig, catalog, cache: Path) -> dict:
    """Fit every stateless strategy once; dense item vectors are cached under ``cache`` keyed by
    the model name and the exact texts encoded (encoding dominates start-up)."""
    from ltrr import registry
    from ltrr.params import validate_params

    out = {}
    for i, sc in enumerate(config.strategies):
        klass = registry.get("strategy", sc.kind)
        if getattr(klass, "stateful", False):
            continue
        params = dict(sc.params)
        if "text_fields" in klass.Params.model_fields and "text_fields" not in params:
            params["text_fields"] = list(config.catalog.text_fields)
        p = validate_params(klass.Params, params, f"strategies[{i}] ({sc.name}).params")
        strat = klass(p, name=sc.name)
        if sc.kind == "dense":
            texts = catalog.compose(p.text_fields)
            key = hashlib.sha1(("\x1e".join([p.model, *texts])).encode()).hexdigest()[:16]
            path = cache / f"dense-{key}.npy"
            if path.exists():
                out[sc.name] = strat.fit_vectors(np.load(path))
                continue
            vectors = strat.encode_items(texts)
            cache.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, vectors)
            os.replace(tmp, path)
            out[sc.name] = strat.fit_vectors(vectors)
        else:
            out[sc.name] = strat.fit(catalog)
    return out


def policy_specs(config: EngineConfig, wanted: list[str]) -> dict[str, tuple[str, dict, bool]]:
    """Label -> (policy type, params, learns from clicks)."""
    full = {s.name: max(s.depths) for s in config.strategies}
    specs: dict[str, tuple[str, dict, bool]] = {
        "all_max": ("fixed", {"depths": full}, True), "rrf_all_max": ("rrf", {"depths": full}, False)}
    for s, d in full.items():
        specs[f"{s}_only"] = ("fixed", {"depths": {s: d}}, True)
        specs[f"{s}_static"] = ("rrf", {"depths": {s: d}}, False)
    unknown = [w for w in wanted if w not in specs]
    if unknown:
        raise SystemExit(f"unknown policy {unknown[0]!r}; known: {', '.join(specs)}")
    return {w: specs[w] for w in wanted}


def run_one(config, catalog, prebuilt, stream, policy: tuple[str, dict, bool], click_model: str,
            preset: str, seed: int) -> dict:
    from ltrr.engine import Engine
    from simulators.environment import run_session
    from simulators.session import make_click_model

    type_, params, _learns = policy
    cfg = config.model_copy(update={"seed": seed}).with_policy(type_, params)
    t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    engine = Engine.from_config(cfg, catalog=catalog,  # own query caches per run
                                prebuilt={n: s.with_fresh_caches() for n, s in prebuilt.items()})
    res = run_session(engine, stream, make_click_model(click_model, preset), seed=seed)
    retrains = getattr(engine, "n_ranker_fits", engine.ranker.n_fits_)
    engine.close()
    c1 = resource.getrusage(resource.RUSAGE_SELF)
    s = res.summary()
    return {"ndcg@10": round(s["ndcg@10"], 5), "ndcg@10_second_half": round(s["ndcg@10_second_half"], 5),
            "ndcg@10_last500": round(float(np.nanmean(res.ndcg[-500:])), 5),
            "mean_candidates": round(s["mean_candidates"], 2), "clicks_per_query": round(s["clicks_per_query"], 4),
            "ranker_fits": int(retrains), "wall_s": round(time.perf_counter() - t0, 1),
            "cpu_s": round((c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime), 1)}


def summary(paths: list[Path]) -> None:
    """Per setting and per ``label`` (e.g. before / after): ranker-ordered runs against fusion on
    the same stream, mean over seeds and the smallest / largest per-seed difference. Fusion lines
    may come from any of the files (their pages do not depend on the ranker's code)."""
    rows = [json.loads(line) for p in paths for line in p.read_text().splitlines() if line.strip()]
    fusion = {(r["collection"], r["seed"], r["policy"]): r["ndcg@10"] for r in rows if r["click_model"] == "any"}
    learned: dict[tuple, dict[int, float]] = {}
    for r in rows:
        if r["click_model"] != "any":
            key = (r["collection"], r["click_model"], r["preset"], r["policy"], r.get("label", ""))
            learned.setdefault(key, {})[r["seed"]] = r["ndcg@10"]
    print(f"{'collection':<10} {'clicks':<8} {'preset':<14} {'policy':<10} {'label':<8} {'learned':>8} "
          f"{'fusion':>8} {'diff':>8} {'min diff':>8} {'max diff':>8} seeds")
    for (coll, cm, preset, pol, label), by_seed in sorted(learned.items()):
        ref = "rrf_all_max" if pol == "all_max" else pol.replace("_only", "_static")
        seeds = sorted(s for s in by_seed if (coll, s, ref) in fusion)
        if not seeds:
            continue
        a = np.array([by_seed[s] for s in seeds])
        b = np.array([fusion[(coll, s, ref)] for s in seeds])
        d = a - b
        print(f"{coll:<10} {cm:<8} {preset:<14} {pol:<10} {label:<8} {a.mean():>8.4f} {b.mean():>8.4f} "
              f"{d.mean():>+8.4f} {d.min():>+8.4f} {d.max():>+8.4f} {','.join(map(str, seeds))}")


def add_protocol_arguments(ap: argparse.ArgumentParser) -> None:
    """The options every online-LTR protocol benchmark shares: what to run it on and how often."""
    ap.add_argument("--collections", default="cranfield,cisi")
    ap.add_argument("--click-models", default="pbm,cascade")
    ap.add_argument("--presets", default="perfect,navigational,informational")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--rounds", type=int, default=3000)


def done_groups(out: Path | None, version: str, config_hash: str) -> set[tuple]:
    """``(collection, click model, preset, seed, policy)`` of the lines ``out`` already holds
    for this code version and config hash (a rerun skips them: resume)."""
    done: set[tuple] = set()
    if out is not None and out.exists():
        for text in out.read_text().splitlines():
            r = json.loads(text)
            if r.get("code_version") == version and r.get("config_hash") == config_hash:
                done.add((r["collection"], r["click_model"], r["preset"], r["seed"], r["policy"]))
    return done


def emit(line: dict, out: Path | None) -> None:
    """Print one result line, and append it to ``out`` when given."""
    text = json.dumps(line)
    print(text, flush=True)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a") as fh:
            fh.write(text + "\n")


def merge_sections(config: EngineConfig, overrides: dict) -> EngineConfig:
    """``config`` with ``overrides`` merged per section (e.g. ``{"reward": {"latency_weight":
    0.0001}}``; a non-table value replaces the section's)."""
    if not overrides:
        return config
    data = config.model_dump(mode="json")
    for key, val in overrides.items():
        data[key] = {**data[key], **val} if isinstance(val, dict) and isinstance(data.get(key), dict) else val
    return parse_config(data, "<override>")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_protocol_arguments(ap)
    ap.add_argument("--config", default=str(ROOT / "configs" / "ir_bm25_dense.toml"))
    ap.add_argument("--policies", default="all_max,rrf_all_max,bm25_only,bm25_static")
    ap.add_argument("--ranker-params", default="{}", help="JSON overriding [ranker].params (ablations).")
    ap.add_argument("--ranker-config", default="{}", help="JSON overriding [ranker] (e.g. retrain_every).")
    ap.add_argument("--label", default="", help="Free text recorded on every line (e.g. the ablation).")
    ap.add_argument("--cache", default=str(ROOT / "runs" / "cache"), help="Dense vector cache directory.")
    ap.add_argument("--out", default=None, help="Append lines here too; skip combinations already there.")
    ap.add_argument("--summary", nargs="+", default=None, help="Print the table of results files and exit.")
    args = ap.parse_args(argv)
    if args.summary:
        summary([Path(p) for p in args.summary])
        return
    from simulators.collections import IRCollection
    from simulators.session import NO_INCUMBENT

    base = load_config(args.config)
    ranker = base.ranker.model_copy(update={**json.loads(args.ranker_config),
                                            "params": {**base.ranker.params, **json.loads(args.ranker_params)}})
    # the ranker itself is measured: no incumbent gate serving RRF until the ranker is promoted
    base = base.model_copy(update={"ranker": ranker, "incumbent": base.incumbent.model_copy(update=NO_INCUMBENT)})
    config_hash = hashlib.sha1(json.dumps([base.model_dump(mode="json"), args.rounds], sort_keys=True,
                                          default=str).encode()).hexdigest()[:12]
    version = code_version(("benchmarks/learning.py",))
    out = Path(args.out) if args.out else None
    done = done_groups(out, version, config_hash)
    specs = policy_specs(base, [p for p in args.policies.split(",") if p])
    cond = conditions(int(base.ranker.params.get("num_threads", 1)))
    for coll_name in args.collections.split(","):
        d = collection_dir(coll_name)
        coll = IRCollection.load_dir(d)
        config = base.model_copy(update={"catalog": base.catalog.model_copy(update={"path": str(d / "corpus.jsonl")})})
        prebuilt = dense_with_cached_vectors(config, coll.catalog, Path(args.cache))
        for seed in [int(s) for s in args.seeds.split(",")]:
            stream = coll.stream(args.rounds, seed)
            for label, spec in specs.items():
                settings = ([(cm, p) for cm in args.click_models.split(",") for p in args.presets.split(",")]
                            if spec[2] else [("any", "any")])
                for cm, preset in settings:
                    key = (coll_name, cm, preset, seed, label)
                    if key in done:
                        continue
                    load0 = os.getloadavg()
                    # a fusion run's pages ignore clicks: any click model gives the same numbers
                    result = run_one(config, coll.catalog, prebuilt, stream, spec,
                                     "pbm" if cm == "any" else cm, "informational" if preset == "any" else preset, seed)
                    line = {"bench": "learning", "collection": coll_name, "click_model": cm, "preset": preset,
                            "seed": seed, "policy": label, **result, "rounds": args.rounds,
                            "docs": len(coll.catalog), "judged_queries": len(coll.judged()),
                            "label": args.label, "ranker": base.ranker.model_dump(mode="json"),
                            "code_version": version, "config_hash": config_hash,
                            "load_start": [round(v, 2) for v in load0],
                            "load_end": [round(v, 2) for v in os.getloadavg()], **cond}
                    emit(line, out)


if __name__ == "__main__":
    main()
