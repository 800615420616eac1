"""Side-by-side XR-Linear harness: ltrr and PECOS trained and timed on the same saved matrices.

PECOS needs numpy<2 and scipy<1.14, so it runs in its own virtualenv (``work/pecos-venv``,
created on first use: ``python3 -m venv``, ``pip install "numpy<2" "scipy<1.14"
"scikit-learn<1.6"``, then ``pip install --no-deps libpecos``). Each side trains in a fresh
subprocess (so its CPU time and peak RSS are its own), saves its model, and is then timed on its
fastest documented prediction path: ltrr's saved model loaded with :meth:`XRModel.load`, PECOS's
saved model loaded with ``XLinearModel.load(..., is_predict_only=True)`` (the C++ predict-only
model) in a long-lived worker. Rounds are interleaved (ltrr, PECOS, ltrr, PECOS ...) so both see
the same machine load; every native pool is pinned to the same thread count
(``OMP/OPENBLAS/MKL_NUM_THREADS`` and PECOS's ``threads``).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
# run as a script (each side's fresh process), in either venv: the repo root makes `benchmarks` importable
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.conditions import peak_rss_mb  # noqa: E402

PECOS_VENV = ROOT / "work" / "pecos-venv"
HYPER = {"branching": 16, "max_leaf_size": 100, "beam": 10, "threshold": 0.1, "C": 1.0,
         "bias": 1.0, "negatives": "tfn", "transform": "l3-hinge", "seed": 0}
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

# One script for PECOS's two jobs: ``train DIR THREADS`` (fresh process: CPU time and peak RSS
# are its own) and ``serve DIR THREADS`` (predict-only model; reads commands on stdin).
PECOS_WORKER = r'''
import json, resource, sys, time
import numpy as np
import scipy.sparse as smat

def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n"); sys.stdout.flush()

def peak_rss_mb():
    # VmHWM restarts at exec; ru_maxrss would carry the parent's RSS at fork time
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

job, d, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
if job == "train":
    from pecos.xmc import Indexer, LabelEmbeddingFactory
    from pecos.xmc.xlinear.model import XLinearModel
    X = smat.load_npz(f"{d}/X_train.npz").tocsr().astype(np.float32)
    Y = smat.load_npz(f"{d}/Y_train.npz").tocsc().astype(np.float32)
    X.sort_indices()
    rss0 = peak_rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    Z = LabelEmbeddingFactory.create(Y, X, method="pifa")
    chain = Indexer.gen(Z, indexer_type="hierarchicalkmeans", nr_splits=16, max_leaf_size=100,
                        seed=0, kmeans_max_iter=20, threads=threads)
    t1, c1 = time.perf_counter(), time.process_time()
    model = XLinearModel.train(X, Y, C=chain, threshold=0.1, negative_sampling_scheme="tfn",
                               solver_type="L2R_L2LOSS_SVC_DUAL", Cp=1.0, Cn=1.0, bias=1.0,
                               threads=threads)
    t2, c2 = time.perf_counter(), time.process_time()
    if len(sys.argv) > 4:
        model.save(sys.argv[4])
    out({"train_s": t2 - t0, "train_cpu_s": c2 - c0, "tree_cpu_s": c1 - c0,
         "matcher_cpu_s": c2 - c1, "rss_before_mb": rss0,
         "peak_rss_mb": peak_rss_mb(),
         "levels": [int(c.shape[0]) for c in chain]})
else:
    from pecos.xmc.xlinear.model import XLinearModel
    model = XLinearModel.load(sys.argv[4], is_predict_only=True)
    Xt = smat.load_npz(f"{d}/X_test.npz").tocsr().astype(np.float32)
    Xt.sort_indices()
    kw = dict(beam_size=10, only_topk=10, post_processor="l3-hinge", threads=threads)
    rows = [Xt[i:i + 1] for i in range(Xt.shape[0])]
    model.predict(Xt[:10], **kw)
    out({"ready": True})
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "single":
            wall, cpu = [], []
            for i in range(int(cmd[1])):
                w0, c0 = time.perf_counter(), time.thread_time()
                model.predict(rows[i], **kw)
                cpu.append(time.thread_time() - c0)
                wall.append(time.perf_counter() - w0)
            out({"wall": wall, "cpu": cpu})
        elif cmd[0] == "batch":
            w0, c0 = time.perf_counter(), time.process_time()
            P = model.predict(Xt, **kw).tocsr()
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            ids = np.full((Xt.shape[0], 10), -1, dtype=np.int64)
            for i in range(P.shape[0]):
                a, b = P.indptr[i], P.indptr[i + 1]
                order = np.lexsort((P.indices[a:b], -P.data[a:b]))[:10]
                ids[i, :order.size] = P.indices[a:b][order]
            np.save(f"{d}/pecos_ids.npy", ids)
            out({"wall": wall, "cpu": cpu})
        else:
            break
'''




def pin_threads(n: int) -> dict[str, str]:
    """Environment for a subprocess with every native pool at ``n`` threads."""
    env = dict(os.environ)
    for var in THREAD_VARS:
        env[var] = str(n)
    return env


def ensure_pecos_venv() -> Path:
    """Create ``work/pecos-venv`` with libpecos if it is not there yet; return its python."""
    python = PECOS_VENV / "bin" / "python"
    probe = [str(python), "-c", "import pecos.xmc.xlinear.model"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"# creating {PECOS_VENV} for libpecos (numpy<2, scipy<1.14)", file=sys.stderr)
    base = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    subprocess.run([base, "-m", "venv", str(PECOS_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["numpy<2", "scipy<1.14", "scikit-learn<1.6"], check=True)
    subprocess.run(pip + ["--no-deps", "libpecos"], check=True)
    subprocess.run(probe, check=True)
    return python


def conditions(python: Path, threads: int) -> dict:
    """Library versions and thread settings of both sides."""
    import scipy
    from threadpoolctl import threadpool_info

    peer = subprocess.run(
        [str(python), "-c", "import json, numpy, scipy, importlib.metadata as m; print(json.dumps("
         "{'numpy': numpy.__version__, 'scipy': scipy.__version__, 'libpecos': m.version('libpecos')}))"],
        capture_output=True, text=True, check=True)
    return {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
            "pecos_env": json.loads(peer.stdout), "threads": threads,
            "env_threads": {v: os.environ.get(v) for v in THREAD_VARS},
            "ltrr_native_pools": [{"api": p["internal_api"], "threads": p["num_threads"]}
                                  for p in threadpool_info()],
            "pecos_threads_arg": threads}


def save_matrices(d: Path, **mats: sp.spmatrix) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for name, mat in mats.items():
        mat = sp.csr_matrix(mat, dtype=np.float32)
        mat.sort_indices()
        sp.save_npz(d / f"{name}.npz", mat)


# ---------------------------------------------------------------------- training (subprocesses)
def ltrr_train_worker(d: Path, model_dir: str | None) -> dict:
    """Train ltrr's XRModel on ``d``'s matrices in this (fresh) process; CPU, wall, peak RSS."""
    sys.path.insert(0, str(ROOT))
    from strategies.xmr.model import XRConfig, XRModel

    x = sp.load_npz(d / "X_train.npz").tocsr()
    y = sp.load_npz(d / "Y_train.npz").tocsr()
    rss0 = peak_rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    model = XRModel(XRConfig(**HYPER)).fit(x, y)
    out = {"train_s": time.perf_counter() - t0, "train_cpu_s": time.process_time() - c0,
           **{k: round(v, 3) for k, v in model.fit_cpu_s_.items()},
           "rss_before_mb": rss0,
           "peak_rss_mb": peak_rss_mb(),
           "levels": model.tree.level_sizes()[1:]}
    if model_dir:
        model.save(Path(model_dir))
    return out


def train_pair(d: Path, python: Path, threads: int, repeats: int) -> tuple[list[dict], list[dict]]:
    """Interleaved training runs (ltrr, PECOS, ltrr, PECOS ...); the first saves both models."""
    env = pin_threads(threads)
    ltrr_runs, pecos_runs = [], []
    for r in range(repeats):
        save = r == 0
        (d / "ltrr_model").mkdir(exist_ok=True)
        cmd = [sys.executable, str(Path(__file__).resolve()), "ltrr-train", str(d)]
        if save:
            cmd.append(str(d / "ltrr_model"))
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        ltrr_runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
        script = d / "pecos_worker.py"
        script.write_text(PECOS_WORKER)
        cmd = [str(python), str(script), "train", str(d), str(threads)]
        if save:
            cmd.append(str(d / "pecos_model"))
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        pecos_runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(f"# train round {r + 1}/{repeats}: ltrr {ltrr_runs[-1]['train_cpu_s']:.2f} CPU s, "
              f"pecos {pecos_runs[-1]['train_cpu_s']:.2f} CPU s", file=sys.stderr, flush=True)
    return ltrr_runs, pecos_runs


# ---------------------------------------------------------------------- prediction (interleaved)
class PecosServer:
    """PECOS's predict-only model in a long-lived worker process."""

    def __init__(self, d: Path, python: Path, threads: int):
        script = d / "pecos_worker.py"
        script.write_text(PECOS_WORKER)
        self.proc = subprocess.Popen([str(python), str(script), "serve", str(d), str(threads),
                                      str(d / "pecos_model")], env=pin_threads(threads),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert json.loads(self.proc.stdout.readline())["ready"]

    def ask(self, cmd: str) -> dict:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=60)


def ltrr_single(model, rows: list, n: int) -> dict:
    wall, cpu = [], []
    for i in range(n):
        w0, c0 = time.perf_counter(), time.thread_time()
        model.predict(rows[i], 10)
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
    return {"wall": wall, "cpu": cpu}


def ltrr_batch(model, x_te: sp.csr_matrix) -> tuple[np.ndarray, dict]:
    w0, c0 = time.perf_counter(), time.process_time()
    ids, _ = model.predict(x_te, 10)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    return ids, {"wall": wall, "cpu": cpu}


def predict_pair(d: Path, python: Path, threads: int, repeats: int, n_single: int) -> dict:
    """Interleaved single-query and batch rounds; per round the median single-query time."""
    sys.path.insert(0, str(ROOT))
    from strategies.xmr.model import XRModel

    model = XRModel.load(d / "ltrr_model")
    x_te = sp.load_npz(d / "X_test.npz").tocsr().astype(np.float32)
    x_te.sort_indices()
    rows = [x_te[i:i + 1] for i in range(x_te.shape[0])]
    n_single = min(n_single, x_te.shape[0])
    model.predict(x_te[:10], 10)
    server = PecosServer(d, python, threads)
    rounds = {"ltrr": {"single_wall": [], "single_cpu": [], "batch_wall": [], "batch_cpu": []},
              "pecos": {"single_wall": [], "single_cpu": [], "batch_wall": [], "batch_cpu": []}}
    ids = None
    try:
        for _ in range(repeats):
            for impl in ("ltrr", "pecos"):
                res = ltrr_single(model, rows, n_single) if impl == "ltrr" else server.ask(f"single {n_single}")
                rounds[impl]["single_wall"].append(float(np.median(res["wall"])) * 1000)
                rounds[impl]["single_cpu"].append(float(np.median(res["cpu"])) * 1000)
            for impl in ("ltrr", "pecos"):
                if impl == "ltrr":
                    ids, res = ltrr_batch(model, x_te)
                else:
                    res = server.ask("batch")
                rounds[impl]["batch_wall"].append(res["wall"] * 1000 / x_te.shape[0])
                rounds[impl]["batch_cpu"].append(res["cpu"] * 1000 / x_te.shape[0])
    finally:
        server.close()
    return {"rounds": rounds, "ltrr_ids": ids, "pecos_ids": np.load(d / "pecos_ids.npy"),
            "n_single": n_single, "n_batch": x_te.shape[0]}


def med_spread(values: list[float]) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"median": round(float(np.median(v)), 4), "min": round(float(v.min()), 4),
            "max": round(float(v.max()), 4)}


def summarize_train(ltrr_runs: list[dict], pecos_runs: list[dict]) -> dict:
    out = {}
    for key in ("train_cpu_s", "train_s", "peak_rss_mb"):
        a = med_spread([r[key] for r in ltrr_runs])
        b = med_spread([r[key] for r in pecos_runs])
        out[key] = {"ltrr": a, "pecos": b, "ratio": round(a["median"] / max(b["median"], 1e-12), 3)}
    out["ratio_per_round_cpu"] = [round(a["train_cpu_s"] / b["train_cpu_s"], 3)
                                  for a, b in zip(ltrr_runs, pecos_runs, strict=True)]
    return out


def summarize_predict(res: dict) -> dict:
    out = {}
    r = res["rounds"]
    for key in ("single_cpu", "single_wall", "batch_cpu", "batch_wall"):
        a, b = med_spread(r["ltrr"][key]), med_spread(r["pecos"][key])
        out[f"{key}_ms"] = {"ltrr": a, "pecos": b, "ratio": round(a["median"] / b["median"], 3)}
    out["ratio_per_round_single_cpu"] = [round(x / y, 3) for x, y in
                                         zip(r["ltrr"]["single_cpu"], r["pecos"]["single_cpu"], strict=True)]
    out["ratio_per_round_batch_cpu"] = [round(x / y, 3) for x, y in
                                        zip(r["ltrr"]["batch_cpu"], r["pecos"]["batch_cpu"], strict=True)]
    out["n_single_per_round"], out["n_batch"] = res["n_single"], res["n_batch"]
    return out


def main_worker(argv: list[str]) -> None:
    if argv[0] == "ltrr-train":
        print(json.dumps(ltrr_train_worker(Path(argv[1]), argv[2] if len(argv) > 2 else None)))


if __name__ == "__main__":
    main_worker(sys.argv[1:])
