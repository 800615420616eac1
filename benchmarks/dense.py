"""Benchmark: the dense strategy's encoding path and its approximate faiss indexes.

1. Encoding throughput (texts/s) of our batched path (``DenseRetriever.encode_items``, the path
   ``fit`` uses) against calling ``SentenceTransformer.encode`` directly on the same ~2,000 movie
   texts (title, directors, genres, year by default), same batch size; runs interleaved, best of
   ``--repeats``. Target: ratio >= 0.95.
2. Search on ``--n`` seeded random unit vectors of 384 dimensions, ``--queries`` held-out query
   vectors from the same distribution: recall@10 of HNSW (efSearch sweep) and IVF (nprobe sweep)
   against exact search, single-query throughput (one query per call, one thread) and batched
   throughput (best of ``--rounds``, approximate and exact timed alternately so both see the
   same load on a shared machine), all through our ``VectorIndex``; raw ``faiss.IndexFlatIP``
   is timed too so the wrapper's overhead shows. Target: recall@10 >= 0.95 at >= 10x exact's single-query q/s.
   ``--data gaussian`` is isotropic noise (the hardest case for graph and cell indexes: every
   point is nearly equidistant from a query); ``clustered`` is a seeded mixture of 100 Gaussians
   (isotropic inside each cluster, so nearly as hard); ``lowrank`` is a random 32-dimensional
   Gaussian mapped linearly into 384 dimensions plus isotropic noise (noise/signal norm ~0.18),
   closest to sentence embeddings, whose intrinsic dimension is far below 384.

Prints one JSON line per result.

    .venv/bin/python benchmarks/dense.py [--n 100000] [--data gaussian clustered lowrank] [--seed 7] [--skip-encode]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import faiss  # noqa: E402

from ltrr.catalog import Catalog  # noqa: E402
from strategies.dense import DenseRetriever, VectorIndex, recall_at_k  # noqa: E402
from strategies.encoder import get_encoder  # noqa: E402

# cast lists make texts ~5x longer (hundreds of tokens); --fields adds them back
MOVIE_FIELDS = ("title", "directors", "genres", "year")
DIM = 384
LATENT_DIM = 32


def emit(**kw) -> None:
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in kw.items()}),
          flush=True)


def bench_encoding(n_texts: int, repeats: int, batch_size: int, fields: list[str]) -> None:
    catalog = Catalog.from_jsonl(ROOT / "data" / "movies" / "catalog.jsonl", limit=n_texts)
    texts = catalog.compose(fields)
    dense = DenseRetriever({"text_fields": fields, "batch_size": batch_size})
    model = get_encoder(dense.params.model).model
    model.encode(texts[:64], batch_size=batch_size)  # warm up kernels and tokenizer
    ours, ref = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a = model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                         convert_to_numpy=True)
        ref.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        b = dense.encode_items(texts)
        ours.append(time.perf_counter() - t0)
    emit(bench="encode", n_texts=len(texts), fields=fields, batch_size=batch_size, repeats=repeats,
         mean_chars=float(np.mean([len(t) for t in texts])),
         ours_texts_per_s=len(texts) / min(ours), sentence_transformers_texts_per_s=len(texts) / min(ref),
         ratio=min(ref) / min(ours), max_abs_diff=float(np.abs(a - b).max()))


def make_vectors(kind: str, n: int, n_q: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        x = rng.standard_normal((n + n_q, DIM), dtype=np.float32)
    elif kind == "lowrank":
        latent = rng.standard_normal((n + n_q, LATENT_DIM), dtype=np.float32)
        mixing = rng.standard_normal((LATENT_DIM, DIM), dtype=np.float32)
        x = latent @ mixing + rng.standard_normal((n + n_q, DIM), dtype=np.float32)
    else:
        centers = rng.standard_normal((100, DIM), dtype=np.float32)
        x = centers[rng.integers(100, size=n + n_q)] + rng.standard_normal((n + n_q, DIM), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x[:n]), np.ascontiguousarray(x[n:])


def single_query_qps(search, queries: np.ndarray, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        search(queries[i:i + 1], 10)
    return n / (time.perf_counter() - t0)


def batched_qps(search, queries: np.ndarray) -> float:
    t0 = time.perf_counter()
    search(queries, 10)
    return queries.shape[0] / (time.perf_counter() - t0)


def paired_single_qps(search, reference, queries: np.ndarray, n: int, rounds: int) -> tuple[float, float]:
    """Best-of-``rounds`` single-query q/s of ``search`` and ``reference``, timed alternately so
    both see the same machine load (the benchmark machine is shared)."""
    ours, ref = [], []
    for _ in range(rounds):
        ref.append(single_query_qps(reference, queries, n))
        ours.append(single_query_qps(search, queries, n))
    return max(ours), max(ref)


def bench_search(kind: str, n: int, n_q: int, n_single: int, seed: int, build_threads: int,
                 rounds: int) -> None:
    base, queries = make_vectors(kind, n, n_q, seed)
    faiss.omp_set_num_threads(1)
    exact = VectorIndex(DIM, "flat").build(base)
    raw = faiss.IndexFlatIP(DIM)
    raw.add(base)
    truth, _ = exact.search(queries, 10)
    exact_single, raw_single = paired_single_qps(exact.search, raw.search, queries, n_single, rounds)
    emit(bench="search", data=kind, index="flat", n=n, dim=DIM, recall_at_10=1.0,
         single_qps=exact_single, batched_qps=max(batched_qps(exact.search, queries)
                                                  for _ in range(rounds)),
         raw_faiss_flat_single_qps=raw_single, ours_vs_raw_faiss=exact_single / raw_single)

    sweeps = {"hnsw": ("ef_search", [64, 128, 256, 512, 1024]),
              "ivf": ("nprobe", [8, 16, 32, 64, 128])}
    for index_kind, (knob, values) in sweeps.items():
        faiss.omp_set_num_threads(build_threads)
        t0 = time.perf_counter()
        index = VectorIndex(DIM, index_kind).build(base)
        build_s = time.perf_counter() - t0
        faiss.omp_set_num_threads(1)
        for v in values:
            index.apply_search_params(**{knob: v})
            ids, _ = index.search(queries, 10)
            rec = float(recall_at_k(ids, truth).mean())
            single, exact_now = paired_single_qps(index.search, exact.search, queries, n_single,
                                                  rounds)
            emit(bench="search", data=kind, index=index_kind, n=n, dim=DIM, **{knob: v},
                 build_s=build_s, recall_at_10=rec, single_qps=single, exact_single_qps=exact_now,
                 batched_qps=max(batched_qps(index.search, queries) for _ in range(rounds)),
                 speedup_vs_exact_single=single / exact_now,
                 meets_target=bool(rec >= 0.95 and single >= 10 * exact_now))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--single", type=int, default=300, help="queries timed one per call")
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--fields", nargs="+", default=list(MOVIE_FIELDS))
    ap.add_argument("--data", nargs="*", default=["gaussian", "clustered", "lowrank"],
                    choices=["gaussian", "clustered", "lowrank"])
    ap.add_argument("--build-threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="timing rounds (best of)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--skip-encode", action="store_true")
    args = ap.parse_args()
    if not args.skip_encode:
        bench_encoding(args.texts, args.repeats, args.batch_size, args.fields)
    for kind in args.data:
        bench_search(kind, args.n, args.queries, args.single, args.seed, args.build_threads,
                     args.rounds)


if __name__ == "__main__":
    main()
