"""Dask clients for the work that can be spread over processes or machines (shard-parallel
off-policy evaluation, catalog encoding): a quiet local cluster of single-threaded worker
processes, or a connection to an external scheduler."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ltrr.errors import DataError

if TYPE_CHECKING:
    from dask.distributed import Client

_NOISY_LOGGERS = ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.worker",
                  "distributed.core", "distributed.http.proxy", "distributed.utils_perf")


def _quiet() -> None:
    import logging

    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def local_client(n_workers: int = 2) -> Client:
    """A local Dask cluster of ``n_workers`` single-threaded worker *processes* (the per-chunk
    numpy and Parquet decoding hold the GIL often enough that threads would not scale), quiet:
    only errors are logged."""
    _quiet()
    # one core per worker: BLAS and pyarrow's decode pool (which honours OMP_NUM_THREADS) single-threaded.
    # Dask's default MALLOC_TRIM_THRESHOLD_=65536 also pins glibc's mmap threshold at 128 KB, so every
    # per-chunk array is mapped and page-faulted afresh (3x the minor faults, a third more CPU,
    # measured); short-lived OPE workers keep freed memory for reuse instead.
    # (Variables that C libraries read at start-up must be in the environment before the spawn.)
    import dask
    from dask.distributed import Client, LocalCluster

    env = dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), "1")
    env.update(MALLOC_TRIM_THRESHOLD_=str(1 << 30), MALLOC_MMAP_THRESHOLD_=str(32 << 20))
    # the workers' statistical profiler samples every task's stack every 10 ms: CPU we do not need
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env,
                          "distributed.worker.profile.enabled": False}):
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=40)
    return Client(cluster)


def connect(scheduler: str) -> Client:
    """A client of an external Dask scheduler (``tcp://host:port``); workers there must be able
    to import ltrr and read the log at the same path."""
    _quiet()
    from dask.distributed import Client

    try:
        return Client(scheduler, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise DataError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None


def close_client(client: Client) -> None:
    """Close a client and, when it owns a local cluster, the cluster (workers exit, no kill)."""
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()
