"""ltrr.threads: one call sets every loaded native pool; the batch scope restores it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import faiss
import numpy as np
import pytest
import torch

from ltrr.config import parse_config
from ltrr.errors import ConfigError
from ltrr.threads import (
    THREAD_ENV_VARS,
    current_native_threads,
    native_thread_report,
    native_threads,
    resolve_threads,
    set_native_threads,
    usable_cores,
)


@pytest.fixture()
def restore_threads():
    """Run the test inside a scope, so the process gets its previous pools back afterwards."""
    with native_threads(current_native_threads()):
        yield


def test_set_native_threads_sets_every_loaded_pool(restore_threads):
    report = set_native_threads(1)
    assert (report.threads, report.lightgbm, report.faiss, report.torch_intra_op) == (1, 1, 1, 1)
    assert faiss.omp_get_max_threads() == 1 and torch.get_num_threads() == 1
    assert report.openmp_blas, "threadpoolctl found no OpenMP/BLAS runtime (numpy's BLAS is loaded)"
    assert all(lib["num_threads"] == 1 for lib in report.openmp_blas), report.openmp_blas
    assert all(os.environ[var] == "1" for var in THREAD_ENV_VARS)
    assert current_native_threads() == 1
    assert native_thread_report() == report


def test_batch_scope_uses_every_core_then_restores(restore_threads):
    set_native_threads(1)
    with native_threads(0) as inside:
        assert inside.threads == usable_cores() == current_native_threads()
        assert faiss.omp_get_max_threads() == usable_cores()
        assert torch.get_num_threads() == usable_cores()
        assert os.environ["OMP_NUM_THREADS"] == str(usable_cores())
    after = native_thread_report()
    assert (after.threads, after.faiss, after.torch_intra_op) == (1, 1, 1)
    assert all(lib["num_threads"] == 1 for lib in after.openmp_blas)
    assert os.environ["OMP_NUM_THREADS"] == "1"


def test_dense_search_applies_the_size_in_the_calling_thread(restore_threads):
    # libgomp keeps omp_set_num_threads per thread: a search from another thread must still
    # run with the configured size
    from strategies.dense import VectorIndex

    set_native_threads(1)
    rng = np.random.default_rng(0)
    index = VectorIndex(16, "flat").build(rng.normal(size=(200, 16)).astype(np.float32))
    seen: list[int] = []

    def search() -> None:
        faiss.omp_set_num_threads(2)  # this thread's own OpenMP setting differs
        seen.append(faiss.omp_get_max_threads())
        index.search(rng.normal(size=(3, 16)).astype(np.float32), 5)
        seen.append(faiss.omp_get_max_threads())

    worker = threading.Thread(target=search)
    worker.start()
    worker.join()
    assert seen == [2, 1]


@pytest.mark.parametrize("bad", [-1, 1.5, "2", True])
def test_bad_thread_counts_are_config_errors(bad):
    with pytest.raises(ConfigError, match=r"The 'threads' parameter must be an int in \[0, inf\) "
                                          r"\(0 = every usable core\)\. Got .* instead\."):
        resolve_threads(bad)


def test_config_threads_section_defaults_and_validation():
    cfg = parse_config({"strategies": [{"name": "bm25"}]})
    assert (cfg.threads.search, cfg.threads.batch) == (1, 0)
    with pytest.raises(ConfigError, match=r"the 'threads.search' parameter .*Got -2 instead"):
        parse_config({"strategies": [{"name": "bm25"}], "threads": {"search": -2}})
    with pytest.raises(ConfigError, match=r"unknown key 'threads.fit'; allowed keys: batch, search"):
        parse_config({"strategies": [{"name": "bm25"}], "threads": {"fit": 2}})


def test_importing_ltrr_and_setting_threads_imports_neither_torch_nor_faiss():
    code = ("import sys, ltrr, ltrr.config, ltrr.threads\n"
            "r = ltrr.threads.set_native_threads(1)\n"
            "assert r.faiss is None and r.torch_intra_op is None, r\n"
            "print(sorted(m for m in ('torch', 'faiss', 'lightgbm') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
