"""Structured search and cold-start Q2E on the movie catalog; one JSON line per result.

Section ``recall``: recall@K (default 100) per query type of ``structured`` vs BM25 (the
reference, ``ratio_vs_bm25``) vs the dense strategy on queries drawn by
``simulators.movies.MovieQueryGenerator`` (relevance derived from catalog fields, not human
judgments), plus per-query retrieval latency.

Section ``cold_start``: hold out a seeded slice of the catalog, build the click memory on the
rest and train it on a simulated click stream (clicks on the best relevant item shown by BM25),
then add the held-out films with ``add_items`` and ask the queries whose best answer is a
held-out film. Hit rate@10 (a top-grade film in the memory's top 10) with predicted entries
(``cold_start = true``) vs without, per query type, and the predicted/observed entry counts.

Run: ``HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/structured.py [--no-dense] [--section ...]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ltrr.catalog import Catalog
from ltrr.config import MOVIE_TEXT_FIELDS
from simulators.movies import MovieQueryGenerator, SimQuery
from strategies.bm25 import BM25
from strategies.memory import ClickMemory
from strategies.structured import StructuredSearch

CATALOG = Path(__file__).resolve().parents[1] / "data" / "movies" / "catalog.jsonl"


def emit(**kw) -> None:
    print(json.dumps(kw, sort_keys=True), flush=True)


def recall_at(ids: np.ndarray, queries: list[SimQuery]) -> np.ndarray:
    return np.array([np.isin(np.fromiter(q.relevant, dtype=np.int64), ids[i]).mean()
                     for i, q in enumerate(queries)])


def section_recall(catalog: Catalog, n_queries: int, k: int, seed: int, dense: bool) -> None:
    qtypes = ("attribute", "person_attribute", "person", "paraphrase", "title", "typo_title")
    gen = MovieQueryGenerator(catalog, seed=seed, type_weights={t: 1.0 for t in qtypes})
    queries = gen.generate(n_queries)
    texts = [q.text for q in queries]
    kinds = np.array([q.qtype for q in queries])
    strategies: dict[str, object] = {}
    t0 = time.perf_counter()
    strategies["structured"] = StructuredSearch().fit(catalog)
    emit(section="recall", event="fit", strategy="structured", seconds=round(time.perf_counter() - t0, 2))
    t0 = time.perf_counter()
    strategies["bm25"] = BM25({"text_fields": MOVIE_TEXT_FIELDS}).fit(catalog)
    strategies["bm25_prior"] = BM25({"text_fields": MOVIE_TEXT_FIELDS, "quality_prior": 1.0}).fit(catalog)
    emit(section="recall", event="fit", strategy="bm25", seconds=round(time.perf_counter() - t0, 2))
    if dense:
        from strategies.dense import DenseRetriever

        t0 = time.perf_counter()
        strategies["dense"] = DenseRetriever({"text_fields": MOVIE_TEXT_FIELDS, "progress": False}).fit(catalog)
        emit(section="recall", event="fit", strategy="dense", seconds=round(time.perf_counter() - t0, 2))
    recalls: dict[str, np.ndarray] = {}
    ms: dict[tuple[str, str], float] = {}
    for name, strat in strategies.items():
        rec = np.zeros(len(texts))
        for t in qtypes:  # timed per query type: unrecognized (title) queries should cost ~nothing
            idx = np.flatnonzero(kinds == t)
            sub = [texts[i] for i in idx]
            t0 = time.perf_counter()
            ids = np.concatenate([strat.retrieve(sub[i:i + 256], k).ids for i in range(0, len(sub), 256)])
            ms[name, t] = (time.perf_counter() - t0) * 1e3 / max(len(sub), 1)
            rec[idx] = recall_at(ids, [queries[i] for i in idx])
        recalls[name] = rec
        emit(section="recall", strategy=name, qtype="all", k=k, queries=len(texts),
             recall=round(float(rec.mean()), 4))
    for t in qtypes:
        mask = kinds == t
        ref = float(recalls["bm25"][mask].mean())
        for name in strategies:
            r = float(recalls[name][mask].mean())
            emit(section="recall", strategy=name, qtype=t, k=k, queries=int(mask.sum()),
                 recall=round(r, 4), ratio_vs_bm25=round(r / ref, 3) if ref > 0 else None,
                 ms_per_query=round(ms[name, t], 3))


def section_cold_start(catalog: Catalog, holdout: float, n_train: int, n_queries: int, seed: int) -> None:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 99]))
    n = len(catalog)
    held = np.sort(rng.choice(n, size=int(holdout * n), replace=False))
    train_rows = np.setdiff1d(np.arange(n), held)
    # the held-out films go last, as items appended after training
    order = np.concatenate([train_rows, held])
    full = Catalog.from_records([{"id": catalog.ids[i], "title": catalog.titles[i], "text": catalog.texts[i],
                                  "fields": catalog.fields[i], "popularity": catalog.popularity[i]}
                                 for i in order])
    base = Catalog.from_records([{"id": full.ids[i], "title": full.titles[i], "text": full.texts[i],
                                  "fields": full.fields[i], "popularity": full.popularity[i]}
                                 for i in range(train_rows.size)])
    new_rows = np.arange(train_rows.size, n, dtype=np.int64)
    # training stream on the base catalog: BM25 shows 10, the user clicks the best relevant
    gen_base = MovieQueryGenerator(base, seed=seed)
    train = gen_base.stream(n_train, max(n_train // 4, 1), seed=seed)
    bm25 = BM25({"text_fields": MOVIE_TEXT_FIELDS}).fit(base)
    shown = bm25.retrieve([q.text for q in train], 10).ids
    # test queries on the full catalog whose best answer is a new film
    gen_full = MovieQueryGenerator(full, seed=seed + 1)
    test = []
    for q in gen_full.generate(n_queries * 20):
        top = max(q.relevant.values())
        best = [r for r, g in q.relevant.items() if g == top]
        if all(r >= train_rows.size for r in best):
            test.append(q)
        if len(test) >= n_queries:
            break
    kinds = np.array([q.qtype for q in test])
    for cold in (False, True):
        t0 = time.perf_counter()
        mem = ClickMemory({"cold_start": cold}).fit(base)
        fit_s = time.perf_counter() - t0
        for i, q in enumerate(train):
            row = shown[i][shown[i] >= 0]
            top = max(q.relevant.values())
            clicked = [r for r in row.tolist() if q.relevant.get(r, 0) == top][:1]
            mem.observe(q.text, row, np.array(clicked, dtype=np.int64), 1000.0 + i)
        t0 = time.perf_counter()
        mem.add_items(full, new_rows)
        add_s = time.perf_counter() - t0
        got = mem.retrieve([q.text for q in test], 10).ids
        hit = np.array([any(q.relevant.get(int(r), 0) == max(q.relevant.values()) for r in got[i] if r >= 0)
                        for i, q in enumerate(test)])
        counts = mem.counts()
        emit(section="cold_start", cold_start=cold, qtype="all", queries=len(test),
             hit_rate_at_10=round(float(hit.mean()), 4), held_out=int(held.size), train_queries=n_train,
             fit_seconds=round(fit_s, 2), add_items_seconds=round(add_s, 2),
             observed_entries=counts["observed"], predicted_entries=counts["predicted"])
        for t in sorted(set(kinds.tolist())):
            m = kinds == t
            emit(section="cold_start", cold_start=cold, qtype=t, queries=int(m.sum()),
                 hit_rate_at_10=round(float(hit[m].mean()), 4))
        if cold:
            # feedback on the new films replaces their predictions with observed statistics
            for i, q in enumerate(test):
                row = got[i][got[i] >= 0]
                top = max(q.relevant.values())
                clicked = [r for r in row.tolist() if q.relevant.get(r, 0) == top][:1]
                mem.observe(q.text, row, np.array(clicked, dtype=np.int64), 1e6 + i)
            after = mem.counts()
            emit(section="cold_start", event="after_feedback_on_test_queries",
                 observed_entries=after["observed"], predicted_entries=after["predicted"],
                 predictions_replaced=counts["predicted"] - after["predicted"])
        mem.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--section", choices=("all", "recall", "cold_start"), default="all")
    ap.add_argument("--queries", type=int, default=1200, help="queries of the recall section")
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-dense", action="store_true", help="skip the dense strategy (model load + encoding)")
    ap.add_argument("--holdout", type=float, default=0.1)
    ap.add_argument("--train", type=int, default=4000, help="training stream length (cold start)")
    ap.add_argument("--cold-queries", type=int, default=600)
    args = ap.parse_args()
    catalog = Catalog.from_jsonl(CATALOG)
    if args.section in ("all", "recall"):
        section_recall(catalog, args.queries, args.k, args.seed, not args.no_dense)
    if args.section in ("all", "cold_start"):
        section_cold_start(catalog, args.holdout, args.train, args.cold_queries, args.seed)


if __name__ == "__main__":
    main()
