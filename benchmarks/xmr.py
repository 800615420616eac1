"""XR-Linear (``strategies.xmr``) against PECOS (libpecos), side by side on the same matrices.

Usage::

    .venv/bin/python benchmarks/xmr.py [--datasets movies synthetic] [--threads 1]

PECOS needs numpy<2 and scipy<1.14, so it lives in its own virtualenv under the git-ignored
``work/pecos-venv`` (created on first run: ``python3 -m venv``, ``pip install "numpy<2"
"scipy<1.14" "scikit-learn<1.6"``, then ``pip install --no-deps libpecos``; scikit-learn is what
``pecos.xmc`` imports besides numpy/scipy). Both implementations get the same training matrices
``X`` (TF-IDF rows) and ``Y`` (binary labels), saved as ``.npz``, and the same hyperparameters:
B=16, leaves of at most 100 labels, beam 10, pruning threshold 0.1, squared hinge (C=1, bias 1),
teacher-forcing negatives, l3-hinge scores. PECOS runs in a subprocess with that venv's python.

Data
----
``movies``
    The 17,470-film catalog. Training pairs: every title as a pseudo-query, plus 20,000 queries
    drawn with a seeded rng: exact titles and misspelled titles (``simulators.movies``'s
    ``MovieQueryGenerator``) and "person + title" strings (a director or cast member of the film
    followed by its title). Test: 3,000 fresh queries of the same kinds (another seed); the
    relevant items are the film and films with the identical title.
``synthetic``
    A seeded XMR problem: 20,000 training queries, 50,000 features, 10,000 labels in 500 topics
    (each label's prototype mixes topic and label features; queries sample a prototype plus
    Zipf noise; 20% of queries carry a second label of the same topic); 5,000 test queries.

Printed: one JSON line per (dataset, implementation) with P@1, P@5, Recall@10, training
seconds (wall, and CPU seconds of the training process: on a shared machine the CPU time is the
steadier comparison), batch milliseconds per query and single-query p50/p90 milliseconds, then one line of
ltrr/PECOS ratios. Targets (issue 4): P@1 and P@5 within 1 point of PECOS or better,
single-query p50 <= 1.25 ms on the movie catalog, training time <= 3x PECOS.

Measured 2026-11-22 on the shared 2-core dev machine (PECOS with 1 thread; wall times are noisy
there, CPU seconds steadier):

=========  =====  ======  ======  =========  =======  =========  ========  ==============
dataset    impl   P@1     P@5     Recall@10  train s  train CPU  batch ms  single p50 ms
=========  =====  ======  ======  =========  =======  =========  ========  ==============
movies     ltrr   0.8843  0.2031  0.9494     25.9     7.08       1.06      0.37 (text 0.55)
movies     pecos  0.8860  0.2043  0.9550     8.0      3.28       0.74      1.47
synthetic  ltrr   0.6610  0.1677  0.7429     5.3      2.65       0.31      0.29
synthetic  pecos  0.6594  0.1673  0.7396     2.3      1.13       0.59      1.04
=========  =====  ======  ======  =========  =======  =========  ========  ==============
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ltrr.catalog import Catalog  # noqa: E402
from strategies.xmr.features import TfidfFeaturizer  # noqa: E402
from strategies.xmr.model import XRConfig, XRModel  # noqa: E402

WORK = ROOT / "work" / "xmr-bench"
PECOS_VENV = ROOT / "work" / "pecos-venv"
HYPER = {"branching": 16, "max_leaf_size": 100, "beam": 10, "threshold": 0.1, "C": 1.0,
         "bias": 1.0, "negatives": "tfn", "transform": "l3-hinge", "seed": 0}
N_SINGLE = 300

PECOS_SCRIPT = r'''
import json, sys, time
import numpy as np
import scipy.sparse as smat
from pecos.xmc import Indexer, LabelEmbeddingFactory
from pecos.xmc.xlinear.model import XLinearModel

d, threads, n_single = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
X = smat.load_npz(f"{d}/X_train.npz").tocsr().astype(np.float32)
Y = smat.load_npz(f"{d}/Y_train.npz").tocsc().astype(np.float32)
Xt = smat.load_npz(f"{d}/X_test.npz").tocsr().astype(np.float32)
for m in (X, Xt):
    m.sort_indices()
t0, c0 = time.perf_counter(), time.process_time()
Z = LabelEmbeddingFactory.create(Y, X, method="pifa")
chain = Indexer.gen(Z, indexer_type="hierarchicalkmeans", nr_splits=16, max_leaf_size=100,
                    seed=0, kmeans_max_iter=20, threads=threads)
model = XLinearModel.train(X, Y, C=chain, threshold=0.1, negative_sampling_scheme="tfn",
                           solver_type="L2R_L2LOSS_SVC_DUAL", Cp=1.0, Cn=1.0, bias=1.0,
                           threads=threads)
train_s, train_cpu_s = time.perf_counter() - t0, time.process_time() - c0
kw = dict(beam_size=10, only_topk=10, post_processor="l3-hinge", threads=threads)
model.predict(Xt[:10], **kw)  # warm up
t0 = time.perf_counter()
P = model.predict(Xt, **kw).tocsr()
batch_s = time.perf_counter() - t0
lat = []
for i in range(min(n_single, Xt.shape[0])):
    row = Xt[i:i + 1]
    t1 = time.perf_counter()
    model.predict(row, **kw)
    lat.append(time.perf_counter() - t1)
ids = np.full((Xt.shape[0], 10), -1, dtype=np.int64)
scores = np.full((Xt.shape[0], 10), -np.inf, dtype=np.float32)
for i in range(P.shape[0]):
    a, b = P.indptr[i], P.indptr[i + 1]
    order = np.argsort(-P.data[a:b], kind="stable")[:10]
    ids[i, :order.size] = P.indices[a:b][order]
    scores[i, :order.size] = P.data[a:b][order]
np.save(f"{d}/pecos_ids.npy", ids)
json.dump({"train_s": train_s, "train_cpu_s": train_cpu_s, "batch_s": batch_s, "lat_s": lat,
           "levels": [int(c.shape[1]) for c in chain]}, open(f"{d}/pecos_times.json", "w"))
'''


# ---------------------------------------------------------------------- environment
def ensure_pecos_venv() -> Path:
    """Create ``work/pecos-venv`` with libpecos if it is not there yet; return its python."""
    python = PECOS_VENV / "bin" / "python"
    probe = [str(python), "-c", "import pecos.xmc.xlinear.model"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"# creating {PECOS_VENV} for libpecos (numpy<2, scipy<1.14)", file=sys.stderr)
    subprocess.run([sys.executable if not Path("/usr/bin/python3").exists() else "/usr/bin/python3",
                    "-m", "venv", str(PECOS_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["numpy<2", "scipy<1.14", "scikit-learn<1.6"], check=True)
    subprocess.run(pip + ["--no-deps", "libpecos"], check=True)
    subprocess.run(probe, check=True)
    return python


# ---------------------------------------------------------------------- data
def movies_data(seed: int = 0) -> tuple[list[str], sp.csr_matrix, list[str], list[set[int]], int]:
    """Training texts + labels and test texts + relevant sets from the movie catalog."""
    from simulators.movies import MovieQueryGenerator

    catalog = Catalog.from_jsonl(ROOT / "data" / "movies" / "catalog.jsonl")
    n_items = len(catalog)
    norm_title: dict[str, list[int]] = {}
    for i, t in enumerate(catalog.titles):
        norm_title.setdefault(t.lower().strip(), []).append(i)

    def same_title(i: int) -> set[int]:
        return set(norm_title[catalog.titles[i].lower().strip()])

    def person_title(rng: np.random.Generator, n: int) -> list[tuple[str, int]]:
        out = []
        while len(out) < n:
            i = int(rng.integers(n_items))
            f = catalog.fields[i]
            people = list(f.get("directors") or []) + list(f.get("cast") or [])[:5]
            if not people:
                continue
            person = people[int(rng.integers(len(people)))]
            out.append((f"{person} {catalog.titles[i]}".lower(), i))
        return out

    def draw(n: int, s: int) -> list[tuple[str, int]]:
        rng = np.random.default_rng(np.random.SeedSequence([seed, s]))
        gen = MovieQueryGenerator(catalog, seed=seed + s,
                                  type_weights={"title": 0.5, "typo_title": 0.5})
        n_pt = int(0.3 * n)
        pairs = []
        for q in gen.generate(n - n_pt):
            best = max(q.relevant, key=lambda r: (q.relevant[r], -r))
            pairs.append((q.text, best))
        pairs += person_title(rng, n_pt)
        order = rng.permutation(len(pairs))
        return [pairs[i] for i in order]

    train = [(t.lower(), i) for i, t in enumerate(catalog.titles) if t.strip()] + draw(20_000, 1)
    test = draw(3_000, 2)
    texts = [t for t, _ in train]
    y = sp.csr_matrix((np.ones(len(train)), (np.arange(len(train)), [i for _, i in train])),
                      shape=(len(train), n_items))
    return texts, y, [t for t, _ in test], [same_title(i) for _, i in test], n_items


def synthetic_data(seed: int = 0, n_train: int = 20_000, n_test: int = 5_000, d: int = 50_000,
                   n_labels: int = 10_000, n_topics: int = 500):
    """A seeded XMR problem with topic structure; returns X/Y for train and test."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 99]))
    fpop = 1.0 / (np.arange(d) + 20.0) ** 0.7
    fpop /= fpop.sum()
    topic_feats = rng.choice(d, size=(n_topics, 40), p=fpop)
    label_topic = rng.integers(n_topics, size=n_labels)
    own = rng.choice(d, size=(n_labels, 12), p=fpop)
    topic_pick = np.take_along_axis(topic_feats[label_topic],
                                    rng.integers(40, size=(n_labels, 10)), axis=1)
    proto_f = np.concatenate([topic_pick, own], axis=1)            # 22 features per label
    proto_w = rng.lognormal(0.0, 0.5, size=proto_f.shape)
    labels_of_topic = [np.flatnonzero(label_topic == t) for t in range(n_topics)]
    lpop = 1.0 / (rng.permutation(n_labels) + 1.0) ** 0.5
    lpop /= lpop.sum()

    def make(n: int, first_cover: bool):
        main = rng.choice(n_labels, size=n, p=lpop)
        if first_cover:
            main[: min(n, n_labels)] = rng.permutation(n_labels)[: min(n, n_labels)]
        rows, cols, vals = [], [], []
        yr, yc = [], []
        for q in range(n):
            lab = int(main[q])
            labs = [lab]
            if rng.random() < 0.2:
                peers = labels_of_topic[label_topic[lab]]
                other = int(peers[rng.integers(peers.size)])
                if other != lab:
                    labs.append(other)
            feats, weights = [], []
            for lb in labs:
                k = 8
                pick = rng.choice(proto_f.shape[1], size=k, replace=False)
                feats.append(proto_f[lb, pick])
                weights.append(proto_w[lb, pick] * rng.uniform(0.5, 1.5, size=k))
            noise = rng.choice(d, size=4, p=fpop)
            feats.append(noise)
            weights.append(rng.uniform(0.2, 0.8, size=4))
            f = np.concatenate(feats)
            w = np.concatenate(weights)
            rows.append(np.full(f.size, q))
            cols.append(f)
            vals.append(w)
            yr += [q] * len(labs)
            yc += labs
        x = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(n, d))
        x.sum_duplicates()
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
        x = sp.csr_matrix(sp.diags(1.0 / norms) @ x, dtype=np.float32)
        y = sp.csr_matrix((np.ones(len(yr)), (yr, yc)), shape=(n, n_labels))
        y.sum_duplicates()
        y.data[:] = 1
        return x, y

    x_tr, y_tr = make(n_train, True)
    x_te, y_te = make(n_test, False)
    return x_tr, y_tr, x_te, y_te


# ---------------------------------------------------------------------- metrics
def metrics(ids: np.ndarray, relevant: list[set[int]]) -> dict[str, float]:
    p1 = np.mean([ids[i, 0] in rel for i, rel in enumerate(relevant)])
    p5 = np.mean([len(set(ids[i, :5].tolist()) & rel) / 5 for i, rel in enumerate(relevant)])
    r10 = np.mean([len(set(ids[i, :10].tolist()) & rel) / max(len(rel), 1)
                   for i, rel in enumerate(relevant)])
    return {"P@1": round(float(p1), 4), "P@5": round(float(p5), 4), "Recall@10": round(float(r10), 4)}


def run_ltrr(d: Path, x_te: sp.csr_matrix) -> tuple[np.ndarray, dict]:
    x = sp.load_npz(d / "X_train.npz").tocsr()
    y = sp.load_npz(d / "Y_train.npz").tocsr()
    t0, c0 = time.perf_counter(), time.process_time()
    model = XRModel(XRConfig(**HYPER)).fit(x, y)
    train_s, train_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    x_te = sp.csr_matrix(x_te, dtype=np.float32)
    model.predict(x_te[:10], 10)
    t0 = time.perf_counter()
    ids, _ = model.predict(x_te, 10)
    batch_s = time.perf_counter() - t0
    lat = []
    for i in range(min(N_SINGLE, x_te.shape[0])):
        row = x_te[i:i + 1]
        t1 = time.perf_counter()
        model.predict(row, 10)
        lat.append(time.perf_counter() - t1)
    return ids, {"train_s": train_s, "train_cpu_s": train_cpu_s, "batch_s": batch_s, "lat_s": lat,
                 "levels": model.tree.level_sizes()[1:], "model": model}


def run_pecos(d: Path, python: Path, threads: int) -> tuple[np.ndarray, dict]:
    script = WORK / "pecos_run.py"
    script.write_text(PECOS_SCRIPT)
    subprocess.run([str(python), str(script), str(d), str(threads), str(N_SINGLE)], check=True)
    times = json.loads((d / "pecos_times.json").read_text())
    return np.load(d / "pecos_ids.npy"), times


def summarize(name: str, impl: str, ids, times, relevant, n_test: int, extra=None) -> dict:
    lat = np.asarray(times["lat_s"]) * 1000
    row = {"dataset": name, "impl": impl, **metrics(ids, relevant),
           "train_s": round(times["train_s"], 3), "train_cpu_s": round(times["train_cpu_s"], 3),
           "batch_ms_per_query": round(times["batch_s"] * 1000 / n_test, 4),
           "single_p50_ms": round(float(np.median(lat)), 4),
           "single_p90_ms": round(float(np.percentile(lat, 90)), 4),
           "levels": times["levels"], **(extra or {})}
    print(json.dumps(row), flush=True)
    return row


def bench(name: str, x_tr, y_tr, x_te, relevant, python: Path, threads: int, texts_te=None,
          featurizer=None) -> None:
    d = WORK / name
    d.mkdir(parents=True, exist_ok=True)
    for fname, mat in (("X_train", x_tr), ("Y_train", y_tr), ("X_test", x_te)):
        mat = sp.csr_matrix(mat, dtype=np.float32)
        mat.sort_indices()
        sp.save_npz(d / f"{fname}.npz", mat)
    n_test = x_te.shape[0]
    ids_l, t_l = run_ltrr(d, x_te)
    extra = {}
    if texts_te is not None:  # end to end: query text -> TF-IDF -> beam search, one at a time
        model = t_l["model"]
        lat = []
        for q in texts_te[:N_SINGLE]:
            t1 = time.perf_counter()
            model.predict(featurizer.transform([q]), 10)
            lat.append(time.perf_counter() - t1)
        extra["text_single_p50_ms"] = round(float(np.median(lat)) * 1000, 4)
    row_l = summarize(name, "ltrr", ids_l, t_l, relevant, n_test, extra)
    ids_p, t_p = run_pecos(d, python, threads)
    row_p = summarize(name, "pecos", ids_p, t_p, relevant, n_test, {"threads": threads})
    ratio = {"dataset": name, "impl": "ltrr/pecos",
             **{k: round(row_l[k] - row_p[k], 4) for k in ("P@1", "P@5", "Recall@10")},
             **{f"{k}_ratio": round(row_l[k] / max(row_p[k], 1e-12), 3)
                for k in ("train_s", "train_cpu_s", "batch_ms_per_query", "single_p50_ms")},
             "note": "metric columns are ltrr minus pecos (points as fractions); *_ratio are ltrr / pecos"}
    print(json.dumps(ratio), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["movies", "synthetic"],
                    choices=["movies", "synthetic"])
    ap.add_argument("--threads", type=int, default=1,
                    help="PECOS threads (ltrr is single-threaded scipy; 1 compares like for like)")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    python = ensure_pecos_venv()
    if "movies" in args.datasets:
        texts, y, texts_te, relevant, _ = movies_data()
        feat = TfidfFeaturizer(3, 3)
        x = feat.fit_transform(texts)
        x_te = feat.transform(texts_te)
        bench("movies", x, y, x_te, relevant, python, args.threads, texts_te, feat)
    if "synthetic" in args.datasets:
        x, y, x_te, y_te = synthetic_data()
        relevant = [set(y_te.indices[y_te.indptr[i]:y_te.indptr[i + 1]].tolist())
                    for i in range(y_te.shape[0])]
        bench("synthetic", x, y, x_te, relevant, python, args.threads)


if __name__ == "__main__":
    main()
