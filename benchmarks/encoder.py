"""Benchmark: the MiniLM encoder's backends (torch, ONNX Runtime fp32, ONNX Runtime int8).

1. Single-query encode time, one thread for every pool (``set_native_threads(1)``): each backend
   encodes the same ``--single`` distinct movie queries one call each (no query cache: the
   encoder's ``encode`` is timed, never a cached answer), backends interleaved (A B C, B C A,
   ...), ``--repeats`` rounds; per-call CPU time (``time.thread_time``) and wall time; the
   median over calls of each round, then the median and spread (min, max) over rounds.
2. Catalog encode throughput (texts/s) on ``--batch-texts`` movie texts with every core
   (``threads.batch = 0``), interleaved, best and median of the rounds.
3. Agreement with the torch path: every backend encodes the items *and* the queries, exact
   (flat) search, top-10 overlap with torch's top-10 averaged over queries (``overlap@10``);
   also with torch item vectors and the backend's query vectors (``mixed``: an index built with
   torch, searched with another backend). On Cranfield (1,400 docs, title + text, 225 queries)
   and the movie catalog (17,470 films, ``DENSE_TEXT_FIELDS``, ``--movie-queries`` distinct
   simulated queries).
4. nDCG@10 and R@100 of dense retrieval alone on Cranfield per backend (``ir_measures``).

Catalog vectors come through the dense strategy's on-disk embedding cache (they are not timed
here); pass ``--no-embedding-cache`` to encode everything afresh. Prints one JSON line per result.

    .venv/bin/python benchmarks/encoder.py [--single 200] [--repeats 3] [--movie-queries 500]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# benchmarks/policies.py would shadow the `policies` package: put the repo first, drop this folder
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import ir_measures  # noqa: E402
from ir_measures import R, nDCG  # noqa: E402

from benchmarks.conditions import conditions, load_average  # noqa: E402
from ltrr.catalog import Catalog  # noqa: E402
from ltrr.config import DENSE_TEXT_FIELDS  # noqa: E402
from ltrr.io import read_qrels, read_queries  # noqa: E402
from ltrr.threads import native_threads, set_native_threads  # noqa: E402
from simulators.movies import MovieQueryGenerator  # noqa: E402
from strategies.dense import DenseRetriever, exact_search  # noqa: E402
from strategies.encoder import BACKENDS, get_encoder  # noqa: E402

CRANFIELD = ROOT / "data" / "cranfield"
MOVIES = ROOT / "data" / "movies" / "catalog.jsonl"


def emit(**kw) -> None:
    # 4 significant digits, so tiny differences (1e-7) stay visible
    print(json.dumps({k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in kw.items()}),
          flush=True)


def spread(values: list[float]) -> dict[str, float]:
    return {"median": float(np.median(values)), "min": float(np.min(values)),
            "max": float(np.max(values))}


def bench_single_query(queries: list[str], repeats: int) -> dict[str, dict]:
    encoders = {b: get_encoder(backend=b) for b in BACKENDS}
    load_start = load_average()
    rounds: dict[str, dict[str, list[float]]] = {b: {"cpu": [], "wall": []} for b in BACKENDS}
    with native_threads(1):
        for enc in encoders.values():  # warm up: sessions, kernels, tokenizer
            for q in queries[:5]:
                enc.encode([q], progress=False)
        for r in range(repeats):
            order = BACKENDS[r % len(BACKENDS):] + BACKENDS[:r % len(BACKENDS)]
            for b in order:
                cpu, wall = [], []
                for q in queries:
                    c0, w0 = time.thread_time(), time.perf_counter()
                    encoders[b].encode([q], progress=False)
                    cpu.append(time.thread_time() - c0)
                    wall.append(time.perf_counter() - w0)
                rounds[b]["cpu"].append(1e3 * float(np.median(cpu)))
                rounds[b]["wall"].append(1e3 * float(np.median(wall)))
        cond = conditions()
    torch_cpu = float(np.median(rounds["torch"]["cpu"]))
    for b in BACKENDS:
        cpu = spread(rounds[b]["cpu"])
        emit(bench="single_query_encode", backend=b, n_queries=len(queries), repeats=repeats,
             cpu_ms=cpu, wall_ms=spread(rounds[b]["wall"]),
             torch_over_backend_cpu=torch_cpu / cpu["median"],
             mean_query_chars=float(np.mean([len(q) for q in queries])),
             query_cache="not used (encode timed directly)", load_average_start=load_start,
             **cond)
    return rounds


def bench_batch(texts: list[str], repeats: int) -> None:
    encoders = {b: get_encoder(backend=b) for b in BACKENDS}
    load_start = load_average()
    rates: dict[str, list[float]] = {b: [] for b in BACKENDS}
    cpu_rates: dict[str, list[float]] = {b: [] for b in BACKENDS}
    with native_threads(0):
        for enc in encoders.values():
            enc.encode(texts[:64], progress=False)
        for r in range(repeats):
            for b in BACKENDS[r % 3:] + BACKENDS[:r % 3]:
                c0, w0 = time.process_time(), time.perf_counter()
                encoders[b].encode(texts, batch_size=64, progress=False)
                rates[b].append(len(texts) / (time.perf_counter() - w0))
                cpu_rates[b].append(len(texts) / (time.process_time() - c0))
        cond = conditions()
    for b in BACKENDS:
        emit(bench="catalog_encode", backend=b, n_texts=len(texts), repeats=repeats,
             texts_per_s=spread(rates[b]), texts_per_cpu_s=spread(cpu_rates[b]),
             load_average_start=load_start, **cond)


def fitted(catalog: Catalog, fields: list[str], backend: str, use_cache: bool) -> DenseRetriever:
    with native_threads(0):
        return DenseRetriever({"text_fields": fields, "backend": backend,
                               "embedding_cache": use_cache}).fit(catalog)


def overlap_at_10(ids: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return np.array([len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(ids, ref, strict=True)])


def bench_agreement(name: str, catalog: Catalog, fields: list[str], queries: list[str],
                    use_cache: bool, qrels: dict | None = None, qids: list[str] | None = None) -> None:
    load_start = load_average()
    torch_dense = fitted(catalog, fields, "torch", use_cache)
    torch_q = get_encoder(backend="torch").encode(queries, progress=False)
    ref_ids, _ = exact_search(torch_dense.embeddings_, torch_q, 10)
    for backend in BACKENDS:
        dense = fitted(catalog, fields, backend, use_cache)
        q = get_encoder(backend=backend).encode(queries, progress=False)
        ids, _ = exact_search(dense.embeddings_, q, 10)
        mixed_ids, _ = exact_search(torch_dense.embeddings_, q, 10)
        own = overlap_at_10(ids, ref_ids)
        row = {"bench": "agreement", "data": name, "backend": backend, "n_items": len(catalog),
               "n_queries": len(queries), "overlap_at_10": float(own.mean()),
               "min_overlap_at_10": float(own.min()),
               "identical_top10_frac": float(np.mean(np.all(ids == ref_ids, axis=1))),
               "mixed_overlap_at_10": float(overlap_at_10(mixed_ids, ref_ids).mean()),
               "item_vectors_max_abs_diff": float(np.abs(np.asarray(dense.embeddings_)
                                                         - np.asarray(torch_dense.embeddings_)).max()),
               "embedding_cache": dense.last_encode}
        if qrels is not None:
            res = dense.retrieve(queries, 1000)
            run = {qid: {catalog.ids[j]: float(s) for j, s in zip(res.ids[i], res.scores[i], strict=True)
                         if j >= 0} for i, qid in enumerate(qids)}
            agg = ir_measures.calc_aggregate([nDCG @ 10, R @ 100], qrels, run)
            row.update({"nDCG@10": agg[nDCG @ 10], "R@100": agg[R @ 100]})
        emit(**row, load_average_start=load_start, load_average_end=load_average())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--single", type=int, default=200, help="distinct queries timed one per call")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-texts", type=int, default=1000)
    ap.add_argument("--movie-queries", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-embedding-cache", action="store_true")
    ap.add_argument("--skip", nargs="*", default=[], choices=["single", "batch", "agreement"])
    args = ap.parse_args()
    set_native_threads(1)
    movies = Catalog.from_jsonl(MOVIES)
    gen = MovieQueryGenerator(movies, seed=args.seed)
    movie_queries = [q.text for q in gen.sample_pool(max(args.movie_queries, args.single))]
    if "single" not in args.skip:
        bench_single_query(movie_queries[:args.single], args.repeats)
    if "batch" not in args.skip:
        rng = np.random.default_rng(args.seed)
        rows = rng.choice(len(movies), size=args.batch_texts, replace=False)
        bench_batch([movies.compose_one(int(i), DENSE_TEXT_FIELDS) for i in rows], args.repeats)
    if "agreement" not in args.skip:
        cran = Catalog.from_jsonl(CRANFIELD / "corpus.jsonl")
        queries = read_queries(CRANFIELD / "queries.jsonl")
        qrels = read_qrels(CRANFIELD / "qrels.txt")
        bench_agreement("cranfield", cran, ["title", "text"], [t for _, t in queries],
                        not args.no_embedding_cache, qrels, [q for q, _ in queries])
        bench_agreement("movies", movies, list(DENSE_TEXT_FIELDS), movie_queries[:args.movie_queries],
                        not args.no_embedding_cache)


if __name__ == "__main__":
    main()
