"""XR-Linear at catalog scale: 10k / 100k / 1M synthetic items, beside PECOS on the same matrices.

Usage::

    .venv/bin/python benchmarks/xmr_scale.py [--sizes 10000 100000] [--pecos-upto 100000]
        [--repeats 3] [--train-threads 1] [--phases] [--out work/xmr-scale/results.jsonl]

Data (:mod:`benchmarks.xmr_data`, seeded): items with a title and a 30-120 word Zipfian text,
``n`` click queries (2-4 words of the item, 10% typos) for training and 2,000 fresh ones for
testing. For every size:

1. ``strategy``: the XR-Linear strategy trained end to end in a fresh process, as ``ltrr`` does
   (``XRLinear.fit_pairs``: the titles + texts as pseudo-queries plus the clicks, TF-IDF word
   1-3-grams + character trigrams with ``min_df=2`` and ``max_terms=48`` per block): CPU and wall
   seconds of featurizing and of the model, peak RSS of the process (catalog included), P@1 and
   Recall@10 on the test queries (the clicked item is the relevant one).
2. ``ltrr/pecos`` (sizes up to ``--pecos-upto``): ltrr's ``XRModel`` and PECOS's XR-Linear
   trained on the very matrices of step 1 in fresh processes, interleaved and repeated
   (:mod:`benchmarks.xmr_harness`): CPU seconds, wall seconds, peak RSS; then the predict-only
   timings and both models' accuracy.

One JSON line per result, with the load average at start and end of each size and the thread
settings; CPU time is the figure to compare on a shared machine. The training matrices are saved
before the fit (the model consumes X), in a phase of its own whose time is left out of the run
line's fit figures; the featurizer's forked tokenizing workers (>= 50k texts) are reported as
``children_cpu_s`` / ``children_max_rss_mb``, not in this process's CPU time and peak RSS.

Measured 2026-11-30 at commit d82ebb2 (load average 7-26 on the shared 2-core machine, 1 thread;
100k: one round only, the machine was too loaded for more):

=====  ======================  ==========  ========  =========  ======  ==================
items  step                    CPU s       peak RSS  P@1 (R@10)         vs PECOS
=====  ======================  ==========  ========  =========  ======  ==================
10k    strategy end to end     10.4        0.63 GB   0.639 (0.702)      --
10k    model on matrices       6.6-7.5     0.27 GB   --                 1.86x CPU (dd82e85)
100k   strategy end to end     200         1.98 GB   0.669 (0.715)      --
100k   model on matrices       133         1.54 GB   0.669 (0.715)      0.82x CPU, 2.0x RSS
=====  ======================  ==========  ========  =========  ======  ==================

100k end to end splits into featurizing 50 s and the model 150 s (tree 76 s, matchers 74 s);
PECOS on the same matrices: 161 s CPU (tree 25 s, matchers 137 s), 0.76 GB, P@1 0.6685, R@10
0.712. Prediction at 100k (4 levels): single query 0.56 vs 0.34 ms CPU (1.66x), batch 0.19 vs
0.087 ms per query (2.2x). 1M was not run to the end: on 2026-12-01 (``--sizes 1000000
--pecos-upto 0 --train-threads 2 --repeats 1``, load ~2) the end-to-end fit was stopped after
18 min wall / 17 min CPU, still in a single-threaded phase, at 13.8 GB RSS and growing; a
second run alone on the machine was stopped at 28 min CPU (28 min wall), still single-threaded
(the training threads had not started), peak RSS 16.4 GB: 1M does not train within 30 min.

Per phase (``--phases``: wall, CPU of all threads and peak RSS of each training phase, from
``VmHWM`` reset at the start of every phase; also appended to ``<dir>/phases.jsonl`` as each
phase ends), ``--train-threads 2``, 2026-12-01. Before: the code of ``4416bb1`` (100k at load
2.7 -> 2.4; 300k at load 1.7 -> 7.1). After: this branch (100k at ``01e48da``,
load 4.5 -> 6.3; 1M at ``e1aa84a``, load 6-8 from other engineers' jobs throughout):

=====  ======  ================  ==================  ===================  ============  ========
items  code    featurize CPU s   k-means tree CPU s  matchers CPU s       fit CPU/wall  peak RSS
=====  ======  ================  ==================  ===================  ============  ========
100k   before  40.1              50.2                70.4                 161 / 156 s   2.17 GB
100k   after   46.0 (load 5)     25.9                72.4                 149 / 330 s   2.11 GB
300k   before  137               216 (5.1 GB)        284                  653 / 1222 s  5.98 GB
1M     after   464 (617 wall)    647 (914 wall)      1,149 (1,675 wall)   2275 / 3281   18.3 GB
=====  ======  ================  ==================  ===================  ============  ========

Same seed, same top-10: the after-code's top-10 on the 2,000 test queries equals the before-code's
at 10k and 100k (``strategy_top10.npy``), and the k-means codes are bitwise those of the old loop
(the sums run in the same order). What changed: word n-gram document frequencies are counted in
two passes (a candidate bit table, then exact counts) instead of one pass over all texts per hash
partition, which made featurizing O(n^2) (40 passes at 1M); k-means rounds are two sparse
products per round over per-level (node, feature) cell matrices, labels in node order, split
by rows over the training threads (scipy releases the GIL), instead of ~10 ``bincount`` passes
over int64 copies of every nonzero; featurizing chunks and single-block matcher levels use the
threads too. 1M (1.86M training rows, 8.2M features, 115M nonzeros, levels 4 / 64 / 1,024 /
16,384 / 1M; P@1 0.607, R@10 0.652) trained end to end in 54.7 min wall and 37.9 min CPU at load
4-8 (0.69 CPU s per wall s): not within 30 min. Matcher levels 1-5: 136, 402, 286, 156, 117 CPU
s. The fit's 18.3 GB peak falls outside the timed sub-phases (tree 13.7 GB, matchers 13.9 GB).

Memory (branch xmr1m2; see docs/speed.md, "Memory at 1M"): each phase's peak is now its own,
not a running maximum, the model fit is a phase of its own and the run line reports the bytes of
the chunked weights and the RSS after the fit. The 18.3 GB was the regrouping of the last
level's weights (whole-level triplets, CSR and six int64 arrays per weight); the tree held the
label embeddings three times. Both are now built piece by piece (same arrays, same codes).
1M at ``907ce83`` (load 8 -> 2, 7-13 in between): peak 11.06 GB (the tree), fit 2,710 CPU s /
4,722 s wall, P@1 0.601, R@10 0.644; 10k and 100k top-10 unchanged.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from contextlib import contextmanager, nullcontext, suppress  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.xmr_harness import (  # noqa: E402
    THREAD_VARS,
    conditions,
    ensure_pecos_venv,
    peak_rss_mb,
    pin_threads,
    predict_pair,
    summarize_predict,
    summarize_train,
    train_pair,
)

WORK = ROOT / "work" / "xmr-scale"
N_TEST = 2000
N_SINGLE = 300
PARAMS = {"text_fields": ["title", "text"], "min_df": 2, "max_terms": 48, "seed": 0}


def accuracy(ids: np.ndarray, rows: np.ndarray) -> dict[str, float]:
    hit = ids == rows[:, None]
    return {"P@1": round(float(hit[:, 0].mean()), 4), "Recall@10": round(float(hit[:, :10].any(1).mean()), 4)}


class Phases:
    """Wall, CPU (all threads) and peak RSS of named phases of one process.

    The peak is the kernel's high-water mark (``VmHWM``), reset at the start of every phase by
    writing 5 to ``/proc/self/clear_refs``, so each phase's ``peak_rss_mb`` is its own (the RSS
    held by the earlier phases included, the peaks of earlier phases not). Phases may nest; a
    nested phase resets its parent's mark, so a parent's peak is the larger of its children's
    peaks and what it reached outside them. ``peak`` is the process's peak over all phases.
    """

    def __init__(self, log: Path | None = None) -> None:
        self.rows: list[dict] = []
        self.peak = 0.0
        self._open: list[float] = []  # per open phase: the largest peak of its finished children
        self.log = log  # each phase is also appended here as it ends (long runs can be watched)

    @staticmethod
    def _reset() -> None:
        with suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")

    @contextmanager
    def phase(self, name: str):
        """Record the enclosed block as ``name``."""
        if self._open:  # the enclosing phase's peak so far, before this phase resets the mark
            self._open[-1] = max(self._open[-1], peak_rss_mb())
        self.peak = max(self.peak, peak_rss_mb())
        self._open.append(0.0)
        self._reset()
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            own = max(peak_rss_mb(), self._open.pop())
            self.peak = max(self.peak, own)
            if self._open:
                self._open[-1] = max(self._open[-1], own)
            self.rows.append({"phase": name, "wall_s": round(time.perf_counter() - t0, 2),
                              "cpu_s": round(time.process_time() - c0, 2),
                              "peak_rss_mb": round(own, 1), "rss_mb": round(rss_mb(), 1),
                              "load_avg": [round(v, 2) for v in os.getloadavg()]})
            if self.log is not None:
                with open(self.log, "a") as f:
                    f.write(json.dumps(self.rows[-1]) + "\n")

    def wrap(self, owner, attr: str, name: str) -> None:
        """Replace ``owner.attr`` by a call recorded as ``name``."""
        fn = getattr(owner, attr)

        def timed(*a, **kw):
            with self.phase(name):
                return fn(*a, **kw)

        setattr(owner, attr, timed)


def save_matrices(d: Path, **mats) -> None:
    """Each matrix as ``<name>.npz`` (CSR, float32, sorted indices, uncompressed); a matrix
    whose indices are not sorted is sorted in a copy, never in place (the fit may read it)."""
    d.mkdir(parents=True, exist_ok=True)
    for name, mat in mats.items():
        mat = sp.csr_matrix(mat, dtype=np.float32)
        if not mat.has_sorted_indices:
            mat = mat.copy()
            mat.sort_indices()
        sp.save_npz(d / f"{name}.npz", mat, compressed=False)


def rss_mb() -> float:
    """This process's current RSS in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def strategy_worker(n: int, d: Path, train_threads: int, phases: Phases | None = None) -> dict:
    """Train the strategy end to end in this process; save the matrices it trained on."""
    from benchmarks.xmr_data import click_queries, synthetic_catalog
    from strategies.xmr import XRLinear
    from strategies.xmr import features as xfeat
    from strategies.xmr import model as xmodel

    if phases is not None:
        phases.wrap(xfeat.TfidfFeaturizer, "_fit_ids", "featurize: fit vocabulary")
        phases.wrap(xfeat.TfidfFeaturizer, "fit_transform", "featurize: fit + transform")
        phases.wrap(xmodel, "pifa", "model: PIFA embeddings")
        phases.wrap(xmodel, "build_tree", "model: k-means tree")
        phases.wrap(xmodel, "train_level_chunked", "model: matchers of one level")
        phases.wrap(XRLinear, "_train", "fit: total")

    with phases.phase("data: synthetic catalog + queries") if phases else nullcontext():
        catalog, packed = synthetic_catalog(n, seed=0)
        queries, rows = click_queries(catalog, packed, n, seed=1)
        test_q, test_rows = click_queries(catalog, packed, N_TEST, seed=2)
    del packed
    rss_data = peak_rss_mb()
    captured: dict = {}
    fit = xmodel.XRModel.fit

    def capture(self, x, y, **kw):  # the exact matrices the strategy trains on
        # saved before the fit, which consumes x (consume_x); timed apart and not counted
        w0, c0 = time.perf_counter(), time.process_time()
        with phases.phase("benchmark: save X_train, Y_train (not training)") if phases else nullcontext():
            captured["shape"], captured["nnz"] = x.shape, int(x.nnz)
            save_matrices(d, X_train=x, Y_train=y)
        captured["save_wall_s"], captured["save_cpu_s"] = time.perf_counter() - w0, time.process_time() - c0
        c0 = time.process_time()
        with phases.phase("model: fit total") if phases else nullcontext():
            out = fit(self, x, y, **kw)
        captured["model_cpu_s"] = time.process_time() - c0
        return out

    xmodel.XRModel.fit = capture
    t0, c0 = time.perf_counter(), time.process_time()
    strat = XRLinear({**PARAMS, "train_threads": train_threads}).fit_pairs(catalog, queries, rows)
    wall = time.perf_counter() - t0 - captured["save_wall_s"]
    cpu = time.process_time() - c0 - captured["save_cpu_s"]
    rss_after = rss_mb()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak = max(peak_rss_mb(), phases.peak if phases else 0.0)
    xmodel.XRModel.fit = fit
    x_te = strat.featurizer_.transform(test_q)
    ids, _ = strat.model_.predict(x_te, 10)
    save_matrices(d, X_test=x_te)
    np.save(d / "test_rows.npy", test_rows)
    np.save(d / "strategy_top10.npy", ids)  # to compare the predictions of two versions
    return {"n_items": n, "n_click_pairs": n, "n_train_rows": captured["shape"][0],
            "n_features": captured["shape"][1], "nnz_train": captured["nnz"], "params": PARAMS,
            "train_threads": train_threads, "save_train_matrices_s": {
                "wall": round(captured["save_wall_s"], 2), "cpu": round(captured["save_cpu_s"], 2)},
            "fit_wall_s": round(wall, 2), "fit_cpu_s": round(cpu, 2),
            "featurize_cpu_s": round(cpu - captured["model_cpu_s"], 2),
            "model_cpu_s": round(captured["model_cpu_s"], 2),
            **{k: round(v, 2) for k, v in strat.model_.fit_cpu_s_.items()},
            "levels": strat.model_.tree.level_sizes()[1:],
            "model_weights_mb": round(sum(a.nbytes for c in strat.model_.chunks
                                          for a in (c.keys, c.ptr, c.child, c.value)) / 2**20, 1),
            "rss_after_fit_mb": round(rss_after, 1),
            "peak_rss_mb": round(peak, 1), "rss_after_data_mb": round(rss_data, 1),
            # the featurizer's forked tokenizing workers (>= 50k texts): not in the CPU and RSS
            # figures above; their max RSS counts the pages they share with this process
            "children_cpu_s": round(children.ru_utime + children.ru_stime, 2),
            "children_max_rss_mb": round(children.ru_maxrss / 1024, 1),
            **accuracy(ids, test_rows), **({"phases": phases.rows} if phases else {})}


def run_size(n: int, args, python: Path | None) -> None:
    d = WORK / f"n{n}"
    load_start = os.getloadavg()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(n), str(d), str(args.train_threads),
           str(int(args.phases))]
    res = subprocess.run(cmd, env=pin_threads(1), capture_output=True, text=True)
    if res.returncode != 0:
        emit({"n_items": n, "impl": "ltrr strategy", "error": res.stderr[-2000:]}, args.out)
        return
    row = json.loads(res.stdout.strip().splitlines()[-1])
    emit({"impl": "ltrr strategy (end to end)", **row,
          "load_avg_start": [round(v, 2) for v in load_start],
          "load_avg_end": [round(v, 2) for v in os.getloadavg()]}, args.out)
    if python is None or n > args.pecos_upto:
        return
    load_start = os.getloadavg()
    ltrr_runs, pecos_runs = train_pair(d, python, 1, args.repeats)
    pred = predict_pair(d, python, 1, args.repeats, N_SINGLE)
    rows = np.load(d / "test_rows.npy")
    base = {"n_items": n, "n_train_rows": row["n_train_rows"], "n_features": row["n_features"],
            "nnz_train": row["nnz_train"], "repeats": args.repeats, "threads": 1,
            "load_avg_start": [round(v, 2) for v in load_start],
            "load_avg_end": [round(v, 2) for v in os.getloadavg()]}
    for impl, ids, runs in (("ltrr", pred["ltrr_ids"], ltrr_runs), ("pecos", pred["pecos_ids"], pecos_runs)):
        emit({**base, "impl": impl, **accuracy(ids, rows), "levels": runs[0]["levels"],
              "train_cpu_s_runs": [round(r["train_cpu_s"], 2) for r in runs],
              "tree_cpu_s_runs": [round(r["tree_cpu_s"], 2) for r in runs],
              "matcher_cpu_s_runs": [round(r["matcher_cpu_s"], 2) for r in runs],
              "peak_rss_mb_runs": [round(r["peak_rss_mb"], 1) for r in runs]}, args.out)
    emit({**base, "impl": "ltrr/pecos", "train": summarize_train(ltrr_runs, pecos_runs),
          "predict": summarize_predict(pred)}, args.out)


def emit(record: dict, out: Path) -> None:
    line = json.dumps(record)
    print(line, flush=True)
    with open(out, "a") as f:
        f.write(line + "\n")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        n, d, threads = int(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
        phases = None
        if sys.argv[5] == "1":
            d.mkdir(parents=True, exist_ok=True)
            (d / "phases.jsonl").unlink(missing_ok=True)
            phases = Phases(d / "phases.jsonl")
        print(json.dumps(strategy_worker(n, d, threads, phases)))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000])
    ap.add_argument("--pecos-upto", type=int, default=100_000,
                    help="train PECOS beside ltrr on the same matrices up to this many items")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--train-threads", type=int, default=1,
                    help="training threads of the end-to-end strategy run (step 1)")
    ap.add_argument("--phases", action="store_true",
                    help="record wall, CPU and peak RSS of every training phase of step 1")
    ap.add_argument("--out", type=Path, default=WORK / "results.jsonl")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    python = ensure_pecos_venv() if args.pecos_upto > 0 else None
    emit({"conditions": conditions(python, 1) if python else {v: os.environ.get(v) for v in THREAD_VARS},
          "sizes": args.sizes, "pecos_upto": args.pecos_upto, "repeats": args.repeats}, args.out)
    for n in args.sizes:
        run_size(n, args, python)


if __name__ == "__main__":
    main()
