"""Cranfield effectiveness of the dense strategy alone (all-MiniLM-L6-v2, exact faiss index).

Documents are title + text, as in the data README's BM25 reference; top 1000 per query; metrics
from ``ir_measures`` over the queries of ``qrels.txt``. For context the same run scores
``rank_bm25.BM25Okapi`` (k1=1.5, b=0.75, ``\\w+`` lowercase tokens), which should reproduce the
README's 0.485 / 0.717. Prints one JSON line per system.

    .venv/bin/python benchmarks/dense_cranfield.py [--data data/cranfield]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ir_measures  # noqa: E402
from ir_measures import R, nDCG  # noqa: E402
from rank_bm25 import BM25Okapi  # noqa: E402

from ltrr.catalog import Catalog  # noqa: E402
from ltrr.io import read_qrels, read_queries  # noqa: E402
from strategies.dense import DenseRetriever  # noqa: E402

DEPTH = 1000
MEASURES = [nDCG @ 10, R @ 100]


def to_run(catalog: Catalog, qids: list[str], ids: np.ndarray, scores: np.ndarray) -> dict:
    run: dict[str, dict[str, float]] = {}
    for qi, qid in enumerate(qids):
        keep = ids[qi] >= 0
        run[qid] = {catalog.ids[j]: float(s) for j, s in zip(ids[qi][keep], scores[qi][keep], strict=True)}
    return run


def evaluate(name: str, qrels: dict, run: dict, extra: dict) -> None:
    agg = ir_measures.calc_aggregate(MEASURES, qrels, run)
    print(json.dumps({"system": name, "nDCG@10": round(agg[nDCG @ 10], 4),
                      "R@100": round(agg[R @ 100], 4), **extra}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(ROOT / "data" / "cranfield"))
    ap.add_argument("--index", default="flat", choices=["flat", "hnsw", "ivf"])
    args = ap.parse_args()
    data = Path(args.data)
    catalog = Catalog.from_jsonl(data / "corpus.jsonl")
    queries = read_queries(data / "queries.jsonl")
    qrels = read_qrels(data / "qrels.txt")
    qids = [q for q, _ in queries]
    texts = [t for _, t in queries]

    t0 = time.perf_counter()
    dense = DenseRetriever({"text_fields": ["title", "text"], "index": args.index}).fit(catalog)
    t1 = time.perf_counter()
    res = dense.retrieve(texts, DEPTH)
    t2 = time.perf_counter()
    evaluate(f"dense-{args.index}", qrels, to_run(catalog, qids, res.ids, res.scores),
             {"model": dense.params.model, "n_docs": len(catalog), "n_queries": len(qids),
              "fit_s_incl_model_load": round(t1 - t0, 1), "retrieve_s": round(t2 - t1, 2)})

    tok = re.compile(r"\w+")
    docs = [tok.findall(t.lower()) for t in catalog.compose(["title", "text"])]
    bm25 = BM25Okapi(docs, k1=1.5, b=0.75)
    scores = np.stack([bm25.get_scores(tok.findall(q.lower())) for q in texts])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :DEPTH]
    evaluate("rank_bm25", qrels, to_run(catalog, qids, order, np.take_along_axis(scores, order, 1)),
             {"n_docs": len(catalog), "n_queries": len(qids)})


if __name__ == "__main__":
    main()
