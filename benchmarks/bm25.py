"""Benchmark: our BM25 against rank_bm25.BM25Okapi and bm25s (numpy backend), single thread.

Two corpora: the shipped movie catalog (text = title, directors, cast, genres, year) and a seeded
synthetic corpus of 100k documents whose tokens follow a Zipf law. For each we time indexing
(tokenizing included for everyone, with the same ``\\w+`` lowercase tokens) and single-query
throughput (one query per call, top 10), and check our top 10 against rank_bm25's on a sample.
Prints one JSON line per result; ratios are ours / theirs.

    .venv/bin/python benchmarks/bm25.py [--docs 100000] [--seed 7]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bm25s  # noqa: E402
from rank_bm25 import BM25Okapi  # noqa: E402

from ltrr.catalog import Catalog  # noqa: E402
from strategies.bm25 import BM25  # noqa: E402

MOVIE_FIELDS = ("title", "directors", "cast", "genres", "year")
_TOKEN = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def emit(**record) -> None:
    print(json.dumps(record), flush=True)


def zipf_catalog(n_docs: int, seed: int, vocab_size: int = 50_000, exponent: float = 1.1,
                 mean_len: int = 50) -> Catalog:
    """A seeded corpus: word ranks ~ Zipf(exponent) over ``vocab_size`` words, lengths ~ 5 + Poisson."""
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    weights = 1.0 / np.arange(1, vocab_size + 1) ** exponent
    cdf = np.cumsum(weights / weights.sum())
    lengths = 5 + rng.poisson(mean_len - 5, size=n_docs)
    ranks = np.minimum(np.searchsorted(cdf, rng.random(int(lengths.sum()))), vocab_size - 1)
    words = np.array([f"w{i}" for i in range(vocab_size)])
    bounds = np.r_[0, np.cumsum(lengths)]
    texts = [" ".join(words[ranks[a:e]]) for a, e in zip(bounds[:-1], bounds[1:], strict=True)]
    popularity = rng.pareto(1.5, size=n_docs)
    return Catalog.from_records([
        {"id": f"d{i}", "title": "", "text": t, "popularity": float(p)}
        for i, (t, p) in enumerate(zip(texts, popularity, strict=True))
    ])


def zipf_queries(n: int, seed: int, vocab_size: int = 50_000, exponent: float = 1.1) -> list[str]:
    """Queries of 2-5 words drawn from the same Zipf law (so some hit very common words)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    weights = 1.0 / np.arange(1, vocab_size + 1) ** exponent
    cdf = np.cumsum(weights / weights.sum())
    out = []
    for length in rng.integers(2, 6, size=n):
        ranks = np.minimum(np.searchsorted(cdf, rng.random(length)), vocab_size - 1)
        out.append(" ".join(f"w{r}" for r in ranks))
    return out


def movie_queries(catalog: Catalog, n: int, seed: int) -> list[str]:
    """Queries a user might type: a title, a person, or genre + year, from seeded random films."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    out = []
    for row, kind in zip(rng.integers(0, len(catalog), size=n), rng.integers(0, 3, size=n), strict=True):
        f = catalog.fields[row]
        people = list(f.get("directors") or []) + list(f.get("cast") or [])
        if kind == 1 and people:
            out.append(str(people[rng.integers(len(people))]))
        elif kind == 2 and f.get("genres") and f.get("year"):
            out.append(f"{f['genres'][0]} {f['year']}")
        else:
            out.append(catalog.titles[row])
    return [q for q in out if tokenize(q)]


def throughput(fn, queries: list) -> float:
    """Queries per second calling ``fn`` once per query."""
    start = time.perf_counter()
    for q in queries:
        fn(q)
    return len(queries) / (time.perf_counter() - start)


def reference_top(ref: BM25Okapi, query: str, k: int) -> np.ndarray:
    """rank_bm25's top k with our tie-break (higher score, then lower row), non-zero scores only."""
    scores = ref.get_scores(tokenize(query))
    nz = np.flatnonzero(scores != 0)
    return nz[np.lexsort((nz, -scores[nz]))][:k]


def run(corpus: str, catalog: Catalog, fields: tuple[str, ...], queries: list[str],
        n_ref_queries: int, k: int = 10) -> None:
    # every index time includes composing the text from the catalog and tokenizing it
    t0 = time.perf_counter()
    ours = BM25({"text_fields": list(fields)}).fit(catalog)
    t_ours = time.perf_counter() - t0

    t0 = time.perf_counter()
    tokens = [tokenize(t) for t in catalog.compose(fields)]
    ref = BM25Okapi(tokens, k1=1.5, b=0.75, epsilon=0.25)
    t_ref = time.perf_counter() - t0

    t0 = time.perf_counter()
    tokens = [tokenize(t) for t in catalog.compose(fields)]
    other = bm25s.BM25(k1=1.5, b=0.75, method="robertson", backend="numpy")
    other.index(tokens, show_progress=False)
    t_bm25s = time.perf_counter() - t0
    del tokens

    emit(corpus=corpus, metric="index_s", n_docs=len(catalog), ours=round(t_ours, 3),
         rank_bm25=round(t_ref, 3), bm25s=round(t_bm25s, 3),
         speedup_vs_rank_bm25=round(t_ref / t_ours, 2), speedup_vs_bm25s=round(t_bm25s / t_ours, 2))

    def ours_one(q: str):
        return ours.retrieve([q], k)

    def ref_one(q: str):
        scores = ref.get_scores(tokenize(q))
        return np.argsort(scores)[::-1][:k]

    def bm25s_one(q: str):
        return other.retrieve([tokenize(q)], k=k, show_progress=False, n_threads=0,
                              backend_selection="numpy")

    for q in queries[:20]:  # warm caches and lazy imports for everyone
        ours_one(q)
        bm25s_one(q)
    qps_ours = max(throughput(ours_one, queries) for _ in range(3))
    qps_bm25s = max(throughput(bm25s_one, queries) for _ in range(3))
    qps_ref = throughput(ref_one, queries[:n_ref_queries])
    emit(corpus=corpus, metric="queries_per_s", k=k, n_queries=len(queries),
         n_queries_rank_bm25=n_ref_queries, ours=round(qps_ours, 1), rank_bm25=round(qps_ref, 2),
         bm25s=round(qps_bm25s, 1), speedup_vs_rank_bm25=round(qps_ours / qps_ref, 1),
         speedup_vs_bm25s=round(qps_ours / qps_bm25s, 2))

    sample = queries[:n_ref_queries]
    got = ours.retrieve(sample, k)
    same = 0
    for i, q in enumerate(sample):
        ids, _ = got.row(i)
        same += int(np.array_equal(ids, reference_top(ref, q, k)))
    emit(corpus=corpus, metric="top10_identical_to_rank_bm25", n_checked=len(sample),
         n_identical=same, all_identical=same == len(sample))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--skip-movies", action="store_true")
    parser.add_argument("--skip-zipf", action="store_true")
    args = parser.parse_args()
    if not args.skip_movies:
        movies = Catalog.from_jsonl(ROOT / "data/movies/catalog.jsonl")
        run("movies", movies, MOVIE_FIELDS, movie_queries(movies, args.queries, args.seed), 200)
    if not args.skip_zipf:
        catalog = zipf_catalog(args.docs, args.seed)
        run(f"zipf{args.docs // 1000}k", catalog, ("text",), zipf_queries(args.queries, args.seed), 20)


if __name__ == "__main__":
    main()
