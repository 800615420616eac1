"""Benchmark: our BM25 against bm25s and rank_bm25.BM25Okapi, single thread, single queries.

Two corpora: the shipped movie catalog (text = the demo's ``MOVIE_TEXT_FIELDS``) and a seeded
synthetic corpus of 100k documents whose tokens follow a Zipf law. For each we time indexing
(tokenizing included for everyone, with the same ``\\w+`` lowercase tokens) and single-query
throughput (one query per call, top 10), and check our top 10 against rank_bm25's.

Like with like: bm25s on its defaults (``backend="numpy"``, ``retrieve`` with
``backend_selection="auto"``, which is numpy unless jax is installed; ``n_threads=0``) and on
its documented faster path, the numba backend (``BM25(backend="numba")``: compiled scoring and
top-k; one thread, ``NUMBA_NUM_THREADS=1``; compiled before the clock starts; both by default,
``--bm25s-backends numpy`` for the first only); rank_bm25 ``get_scores`` + a top-10 sort. ltrr's
compiled kernel (numba, single-threaded) is compiled or loaded from numba's cache at fit, before
the clock starts. The three are interleaved (ours, bm25s, rank_bm25,
ours, ...) for ``--rounds`` rounds; each reports the median and range of its per-round rates,
wall and CPU (``time.thread_time``); ratios are of CPU medians (the machine is shared). Every
query is a new batch: nothing is cached across queries. Run it under numpy 1.26 and 2.x: numpy
2.x slows bm25s' ``argpartition`` over mostly-zero score vectors.

Prints one JSON line per result, each with the conditions (versions, threads, load average).

    python benchmarks/bm25.py [--docs 100000] [--seed 7] [--rounds 3]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from importlib.metadata import PackageNotFoundError, version  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bm25s  # noqa: E402
from rank_bm25 import BM25Okapi  # noqa: E402

from ltrr.catalog import Catalog  # noqa: E402
from ltrr.config import MOVIE_TEXT_FIELDS  # noqa: E402
from strategies.bm25 import BM25  # noqa: E402

_TOKEN = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _version_or_none(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def conditions() -> dict:
    """Library versions and native thread settings, for every result line."""
    return {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "scipy": version("scipy"),
        "versions": {"bm25s": version("bm25s"), "rank_bm25": version("rank-bm25"), "numba": _version_or_none("numba")},
        "threads": {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                    "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")},
        "cpus": os.cpu_count(),
    }


def emit(**record) -> None:
    print(json.dumps(record), flush=True)


def zipf_words(n_words: int, seed: int | list[int], vocab_size: int, exponent: float) -> np.ndarray:
    """``n_words`` word ranks drawn from Zipf(exponent) over ``vocab_size`` words, seeded."""
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    weights = 1.0 / np.arange(1, vocab_size + 1) ** exponent
    cdf = np.cumsum(weights / weights.sum())
    return np.minimum(np.searchsorted(cdf, rng.random(n_words)), vocab_size - 1)


def zipf_catalog(n_docs: int, seed: int, vocab_size: int = 50_000, exponent: float = 1.1,
                 mean_len: int = 50) -> Catalog:
    """A seeded corpus: word ranks ~ Zipf(exponent) over ``vocab_size`` words, lengths ~ 5 + Poisson."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 3]))
    lengths = 5 + rng.poisson(mean_len - 5, size=n_docs)
    ranks = zipf_words(int(lengths.sum()), seed, vocab_size, exponent)
    words = np.array([f"w{i}" for i in range(vocab_size)])
    bounds = np.r_[0, np.cumsum(lengths)]
    texts = [" ".join(words[ranks[a:e]]) for a, e in zip(bounds[:-1], bounds[1:], strict=True)]
    popularity = rng.pareto(1.5, size=n_docs)
    return Catalog.from_records(
        {"id": f"d{i}", "title": "", "text": t, "popularity": float(p)}
        for i, (t, p) in enumerate(zip(texts, popularity, strict=True))
    )


def zipf_queries(n: int, seed: int, vocab_size: int = 50_000, exponent: float = 1.1) -> list[str]:
    """Queries of 2-5 words drawn from the same Zipf law (so some hit very common words)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    lengths = rng.integers(2, 6, size=n)
    ranks = zipf_words(int(lengths.sum()), [seed, 2], vocab_size, exponent)
    bounds = np.r_[0, np.cumsum(lengths)]
    return [" ".join(f"w{r}" for r in ranks[a:e]) for a, e in zip(bounds[:-1], bounds[1:], strict=True)]


def movie_queries(catalog: Catalog, n: int, seed: int) -> list[str]:
    """Queries a user might type: a title, a person, or genre + year, from seeded random films."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    out = []
    for row, kind in zip(rng.integers(0, len(catalog), size=n), rng.integers(0, 3, size=n), strict=True):
        f = catalog.fields[int(row)]
        people = list(f.get("directors") or []) + list(f.get("cast") or [])
        if kind == 1 and people:
            out.append(str(people[rng.integers(len(people))]))
        elif kind == 2 and f.get("genres") and f.get("year"):
            out.append(f"{f['genres'][0]} {f['year']}")
        else:
            out.append(catalog.titles[int(row)])
    return [q for q in out if tokenize(q)]


def timed(fn: Callable[[str], object], queries: list[str]) -> tuple[float, float]:
    """Queries per second (wall, CPU) calling ``fn`` once per query."""
    w0, c0 = time.perf_counter(), time.thread_time()
    for q in queries:
        fn(q)
    return len(queries) / (time.perf_counter() - w0), len(queries) / (time.thread_time() - c0)


def summary(rates: list[float]) -> dict:
    return {"median": round(statistics.median(rates), 2), "min": round(min(rates), 2),
            "max": round(max(rates), 2)}


def reference_top(ref: BM25Okapi, query: str, k: int) -> np.ndarray:
    """rank_bm25's top k with our tie-break (higher score, then lower row), non-zero scores only."""
    scores = ref.get_scores(tokenize(query))
    nz = np.flatnonzero(scores != 0)
    return nz[np.lexsort((nz, -scores[nz]))][:k]


def run(corpus: str, catalog: Catalog, fields: tuple[str, ...], queries: list[str],
        n_ref_queries: int, rounds: int, k: int = 10, bm25s_backends: tuple[str, ...] = ("numpy",)) -> None:
    base = {"corpus": corpus, "n_docs": len(catalog), **conditions()}
    # every index time includes composing the text from the catalog and tokenizing it
    t0 = time.perf_counter()
    ours = BM25({"text_fields": list(fields)}).fit(catalog)
    t_ours = time.perf_counter() - t0

    t0 = time.perf_counter()
    ref = BM25Okapi([tokenize(t) for t in catalog.compose(fields)], k1=1.5, b=0.75, epsilon=0.25)
    t_ref = time.perf_counter() - t0

    t0 = time.perf_counter()
    other = bm25s.BM25(k1=1.5, b=0.75, method="robertson")  # default backend
    other.index([tokenize(t) for t in catalog.compose(fields)], show_progress=False)
    t_bm25s = time.perf_counter() - t0
    others = {"bm25s": other}
    if "numba" in bm25s_backends:  # the same index, scored by the numba backend
        fast = bm25s.BM25(k1=1.5, b=0.75, method="robertson", backend="numba")
        fast.index([tokenize(t) for t in catalog.compose(fields)], show_progress=False)
        others["bm25s_numba"] = fast

    emit(**base, metric="index_s", ours=round(t_ours, 3), rank_bm25=round(t_ref, 3),
         bm25s=round(t_bm25s, 3), speedup_vs_rank_bm25=round(t_ref / t_ours, 2),
         speedup_vs_bm25s=round(t_bm25s / t_ours, 2))

    def ours_one(q: str):
        return ours.retrieve([q], k)

    def peer(model):
        def one(q: str):
            return model.retrieve([tokenize(q)], k=k, show_progress=False)
        return one

    def ref_one(q: str):
        scores = ref.get_scores(tokenize(q))
        return np.argsort(scores)[::-1][:k]

    load_start = os.getloadavg()
    peers = {"ours": (ours_one, queries), **{n: (peer(m), queries) for n, m in others.items()},
             "rank_bm25": (ref_one, queries[:n_ref_queries])}
    for q in queries[:20]:  # lazy imports, first-call allocations and numba compiles, for everyone
        for fn, _ in peers.values():
            fn(q)
    wall: dict[str, list[float]] = {n: [] for n in peers}
    cpu: dict[str, list[float]] = {n: [] for n in peers}
    for _ in range(rounds):  # interleaved: ours, bm25s, rank_bm25, ours, ...
        for name, (fn, qs) in peers.items():
            w, c = timed(fn, qs)
            wall[name].append(w)
            cpu[name].append(c)
    med = {n: statistics.median(v) for n, v in cpu.items()}
    emit(**base, metric="queries_per_s", k=k, n_queries=len(queries),
         n_distinct_queries=len(set(queries)), n_queries_rank_bm25=n_ref_queries, rounds=rounds,
         cache="cold: a new batch per query, no cache across queries",
         load_avg_start=load_start, load_avg_end=os.getloadavg(),
         cpu_qps={n: summary(v) for n, v in cpu.items()},
         wall_qps={n: summary(v) for n, v in wall.items()},
         cpu_ratio_vs_bm25s=round(med["ours"] / med["bm25s"], 2),
         **({"cpu_ratio_vs_bm25s_numba": round(med["ours"] / med["bm25s_numba"], 2)} if "bm25s_numba" in med else {}),
         cpu_ratio_vs_rank_bm25=round(med["ours"] / med["rank_bm25"], 1),
         wall_ratio_vs_bm25s=round(statistics.median(wall["ours"]) / statistics.median(wall["bm25s"]), 2))

    sample = queries[:n_ref_queries]
    got = ours.retrieve(sample, k)
    same = same_but_ties = 0
    for i, q in enumerate(sample):
        ids, want = got.row(i)[0], reference_top(ref, q, k)
        same += int(np.array_equal(ids, want))
        # rank_bm25 sums in float64 in query order: scores equal in exact arithmetic can differ
        # in the last bits and order differently; count rows that differ only there
        scores = ref.get_scores(tokenize(q))
        same_but_ties += int(ids.size == want.size and np.allclose(scores[ids], scores[want], rtol=1e-12, atol=0))
    emit(**base, metric="top10_identical_to_rank_bm25", n_checked=len(sample), n_identical=same,
         n_identical_up_to_float64_ties=same_but_ties, all_identical=same == len(sample))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-movies", action="store_true")
    parser.add_argument("--skip-zipf", action="store_true")
    parser.add_argument("--bm25s-backends", nargs="+", default=["numpy", "numba"], choices=["numpy", "numba"],
                        help="bm25s backends to time")
    args = parser.parse_args()
    if not args.skip_movies:
        movies = Catalog.from_jsonl(ROOT / "data/movies/catalog.jsonl")
        run("movies", movies, tuple(MOVIE_TEXT_FIELDS), movie_queries(movies, args.queries, args.seed),
            200, args.rounds, bm25s_backends=tuple(args.bm25s_backends))
    if not args.skip_zipf:
        catalog = zipf_catalog(args.docs, args.seed)
        run(f"zipf{args.docs // 1000}k", catalog, ("text",), zipf_queries(args.queries, args.seed),
            20, args.rounds, bm25s_backends=tuple(args.bm25s_backends))


if __name__ == "__main__":
    main()
