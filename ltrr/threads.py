"""Native thread pools: one function sets them all to one size.

A search is a handful of small native calls (a faiss scan, a torch or ONNX Runtime forward pass,
a LightGBM predict, a few BLAS products). Their libraries default to one OpenMP/BLAS thread per
core per call; on a shared machine, or with several serving threads, those pools spin against
each other and a 2 ms faiss scan can take 60 ms (measured: ``benchmarks/threads.py``). So the
engine pins every pool with :func:`set_native_threads` (``threads.search`` in the config, default
1) and lets batch work (fitting, encoding a catalog) use more inside :func:`native_threads`
(``threads.batch``, default 0 = every usable core).

What is set, for libraries already loaded (nothing is imported here that the process has not
imported: importing ltrr stays light):

* faiss: ``faiss.omp_set_num_threads`` (libgomp keeps this per calling thread, so the dense
  strategy also applies :func:`current_native_threads` in the thread that searches);
* torch: ``torch.set_num_threads`` (intra-op) and, once per process before torch's first
  parallel work, ``torch.set_num_interop_threads`` (torch refuses later changes; the report says
  whether it took);
* every OpenMP runtime and BLAS library loaded in the process (OpenBLAS, MKL, BLIS, libgomp,
  libomp: numpy's, scipy's, LightGBM's, faiss' and torch's copies) through ``threadpoolctl``;
* ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS``, so runtimes loaded later
  start with the same size;
* LightGBM and ONNX Runtime take a thread count per call or per session, not a global: they read
  :func:`current_native_threads` (the ranker passes it as ``num_threads``; the ONNX encoder builds
  its session with it).

The pools are process-wide: :func:`native_threads` changes them for every thread of the process
while it is active, so a server should not run batch work beside searches with a different size.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ltrr.errors import ConfigError

#: environment variables read by OpenMP / BLAS runtimes when they are first loaded
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

_lock = threading.RLock()
_current: int | None = None


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve_threads(n: int, where: str = "threads") -> int:
    """``n`` threads, with 0 meaning every usable core; a negative or non-int ``n`` is an error."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"The '{where}' parameter must be an int in [0, inf) (0 = every usable "
                          f"core). Got {n!r} instead.")
    return usable_cores() if n == 0 else n


def current_native_threads() -> int:
    """The size last set by :func:`set_native_threads`; before any call, every usable core (what
    the libraries default to). LightGBM calls and ONNX Runtime sessions take this value."""
    return usable_cores() if _current is None else _current


@dataclass(frozen=True)
class NativeThreads:
    """What :func:`set_native_threads` set, or :func:`native_thread_report` read.

    ``faiss`` / ``torch_intra_op`` / ``torch_inter_op`` are ``None`` when the library is not
    loaded; ``openmp_blas`` lists each runtime threadpoolctl found (``user_api``,
    ``internal_api``, library file name, ``num_threads``).
    """

    threads: int
    lightgbm: int
    faiss: int | None
    torch_intra_op: int | None
    torch_inter_op: int | None
    openmp_blas: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    env: dict[str, str | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"threads": self.threads, "lightgbm": self.lightgbm, "faiss": self.faiss,
                "torch_intra_op": self.torch_intra_op, "torch_inter_op": self.torch_inter_op,
                "openmp_blas": [dict(x) for x in self.openmp_blas], "env": dict(self.env)}


def _threadpool_info() -> tuple[dict[str, Any], ...]:
    from threadpoolctl import threadpool_info

    return tuple({"user_api": d.get("user_api"), "internal_api": d.get("internal_api"),
                  "library": os.path.basename(d.get("filepath", "")),
                  "num_threads": d.get("num_threads")} for d in threadpool_info())


def native_thread_report() -> NativeThreads:
    """The thread settings in force now, read from every loaded library (changes nothing).

    Benchmarks record it beside their timings.
    """
    faiss = sys.modules.get("faiss")
    torch = sys.modules.get("torch")
    return NativeThreads(
        threads=current_native_threads(),
        lightgbm=current_native_threads(),
        faiss=int(faiss.omp_get_max_threads()) if faiss is not None else None,
        torch_intra_op=int(torch.get_num_threads()) if torch is not None else None,
        torch_inter_op=int(torch.get_num_interop_threads()) if torch is not None else None,
        openmp_blas=_threadpool_info(),
        env={var: os.environ.get(var) for var in THREAD_ENV_VARS},
    )


def set_native_threads(n: int) -> NativeThreads:
    """Set every native pool of the process to ``n`` threads (0 = every usable core).

    Returns what was set, read back from the libraries. Call it after the components are built
    or loaded (a library imported later starts from the environment variables set here).
    """
    global _current
    n = resolve_threads(n)
    with _lock:
        for var in THREAD_ENV_VARS:
            os.environ[var] = str(n)
        faiss = sys.modules.get("faiss")
        if faiss is not None:
            faiss.omp_set_num_threads(n)
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(n)
            if torch.get_num_interop_threads() != n:
                # only settable before torch's first inter-op parallel work; the report says
                with contextlib.suppress(RuntimeError):
                    torch.set_num_interop_threads(n)
        from threadpoolctl import threadpool_limits  # pure Python; numpy's BLAS is always loaded

        threadpool_limits(limits=n)  # used without a context: the limits stay until changed
        _current = n
        return native_thread_report()


@contextmanager
def native_threads(n: int) -> Iterator[NativeThreads]:
    """Run a block with every pool at ``n`` threads (0 = every usable core), then restore the
    previous size and environment. For batch work such as fitting strategies or encoding a
    catalog."""
    global _current
    with _lock:
        previous = _current
        env = {var: os.environ.get(var) for var in THREAD_ENV_VARS}
        settings = set_native_threads(n)
    try:
        yield settings
    finally:
        with _lock:
            set_native_threads(usable_cores() if previous is None else previous)
            for var, value in env.items():
                if value is None:
                    os.environ.pop(var, None)
                else:
                    os.environ[var] = value
            _current = previous
