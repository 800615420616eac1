"""Nonparametric bootstrap confidence intervals for the mean of per-round estimator terms.

An integer seed reproduces Open Bandit Pipeline's draws exactly: OBP resamples with
``RandomState(seed).choice(samples, size=n)`` once per bootstrap replicate, which consumes the
legacy stream exactly like ``RandomState(seed).randint(0, n, size=(B, n))`` read row by row. We
draw the index matrix in row chunks so memory stays bounded for long logs. A
``numpy.random.Generator`` may be passed instead when OBP parity does not matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ltrr.errors import ConfigError

# at most this many resampled indices are held in memory at once
_CHUNK_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class Interval:
    """A bootstrap interval: the mean of the bootstrap replicates and its two percentiles."""

    mean: float
    low: float
    high: float
    alpha: float

    def to_obp_dict(self) -> dict[str, float]:
        """The same numbers under the keys OBP's ``estimate_interval`` uses."""
        level = 100 * (1.0 - self.alpha)
        return {
            "mean": self.mean,
            f"{level}% CI (lower)": self.low,
            f"{level}% CI (upper)": self.high,
        }


def check_interval_arguments(alpha: float, n_bootstrap_samples: int, random_state: object) -> None:
    """Validate bootstrap arguments, naming the bad value."""
    if isinstance(alpha, bool) or not isinstance(alpha, float | int) or not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must be a float in (0, 1). Got {alpha!r} instead.")
    if (
        isinstance(n_bootstrap_samples, bool)
        or not isinstance(n_bootstrap_samples, int | np.integer)
        or n_bootstrap_samples < 1
    ):
        raise ConfigError(
            f"n_bootstrap_samples must be an int in [1, inf). Got {n_bootstrap_samples!r} instead."
        )
    if not (
        isinstance(random_state, np.random.Generator)
        or (isinstance(random_state, int | np.integer) and not isinstance(random_state, bool))
    ):
        raise ConfigError(
            "random_state must be an int seed or a numpy.random.Generator. "
            f"Got {random_state!r} instead."
        )


def bootstrap_replicates(
    samples: np.ndarray, n_bootstrap_samples: int, random_state: int | np.random.Generator
) -> np.ndarray:
    """Means of ``n_bootstrap_samples`` resamples (with replacement) of ``samples``.

    Parameters
    ----------
    samples
        Per-round estimator terms, ``float[n]``.
    n_bootstrap_samples
        Number of replicates ``B``.
    random_state
        Int seed (OBP-compatible legacy stream) or a ``numpy.random.Generator``.

    Returns
    -------
    numpy.ndarray
        ``float64[B]`` replicate means.
    """
    samples = np.asarray(samples, dtype=np.float64)
    n = samples.shape[0]
    if n == 0:
        raise ValueError("Cannot bootstrap an empty sample.")
    if isinstance(random_state, np.random.Generator):
        draw = lambda rows: random_state.integers(0, n, size=(rows, n))  # noqa: E731
    else:
        legacy = np.random.RandomState(int(random_state))  # legacy stream: OBP parity
        draw = lambda rows: legacy.randint(0, n, size=(rows, n))  # noqa: E731
    out = np.empty(n_bootstrap_samples, dtype=np.float64)
    step = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, n_bootstrap_samples, step):
        rows = min(step, n_bootstrap_samples - start)
        out[start : start + rows] = samples[draw(rows)].mean(axis=1)
    return out


def bootstrap_interval(
    samples: np.ndarray,
    alpha: float = 0.05,
    n_bootstrap_samples: int = 10000,
    random_state: int | np.random.Generator = 0,
) -> Interval:
    """Percentile bootstrap interval of the mean of ``samples`` at level ``1 - alpha``."""
    check_interval_arguments(alpha, n_bootstrap_samples, random_state)
    reps = bootstrap_replicates(samples, n_bootstrap_samples, random_state)
    return Interval(
        mean=float(np.mean(reps)),
        low=float(np.percentile(reps, 100 * (alpha / 2))),
        high=float(np.percentile(reps, 100 * (1.0 - alpha / 2))),
        alpha=float(alpha),
    )


# ----------------------------------------------------------------------------------------------
# Poisson bootstrap: mergeable over chunks of a log, streamed in blocks of replicates

#: replicates drawn per block: the unit of streaming (memory) and of seeding (so the draws do
#: not depend on how many replicates are asked for at once). 32 x 65,536 rows x 8 bytes = 16 MB:
#: under glibc's largest mmap threshold (32 MB), so the block's buffers are reused from the heap
#: instead of being mapped and page-faulted afresh for every chunk (measured: that was a third
#: of the bootstrap's CPU in Dask workers, whose malloc settings keep the threshold at 128 KB)
REPLICATE_BLOCK = 32
#: rows of a log chunk the Poisson bootstrap weighs at once (chunks are cut to this size)
CHUNK_ROWS = 65_536

_POISSON_TABLE: np.ndarray | None = None


def poisson_table() -> np.ndarray:
    """Poisson(1) quantiles of the 65,536 equiprobable uint16 values (exact small integers)."""
    global _POISSON_TABLE
    if _POISSON_TABLE is None:
        from scipy.stats import poisson

        u = (np.arange(65536) + 0.5) / 65536.0
        _POISSON_TABLE = poisson.ppf(u, 1.0).astype(np.float64)
    return _POISSON_TABLE


def poisson_replicate_sums(columns: np.ndarray, n_boot: int, seed: int, key: tuple[int, ...]) -> np.ndarray:
    """``float64[n_boot, k]``: column sums of ``columns[n, k]`` under ``n_boot`` Poisson(1)
    bootstrap weightings of the rows.

    Each row of each replicate gets an independent Poisson(1) weight, so a replicate of a whole
    log is the sum of its chunks' replicates (mergeable across shards). The weights of a chunk
    are drawn in blocks of :data:`REPLICATE_BLOCK` replicates, each block from its own stream
    seeded by ``(seed, *key, block)``: memory stays at one block (about 10 bytes x block x
    rows), whatever ``n_boot``.
    """
    columns = np.ascontiguousarray(columns, dtype=np.float64)
    n, k = columns.shape
    out = np.zeros((n_boot, k))
    if n == 0 or n_boot == 0:
        return out
    table = poisson_table()
    weights = np.empty((min(REPLICATE_BLOCK, n_boot), n))
    for b, lo in enumerate(range(0, n_boot, REPLICATE_BLOCK)):
        rows = min(REPLICATE_BLOCK, n_boot - lo)
        rng = np.random.PCG64(np.random.SeedSequence([int(seed), *map(int, key), b]))
        # raw 64-bit words read as four uint16 draws each (equiprobable, half the cost of integers())
        draws = rng.random_raw(-(-rows * n // 4)).view(np.uint16)[: rows * n].reshape(rows, n)
        w = weights[:rows]
        np.take(table, draws, out=w, mode="clip")  # "raise" would buffer the whole block
        out[lo: lo + rows] = w @ columns
    return out


def percentile_interval(replicates: np.ndarray, alpha: float) -> tuple[float, float]:
    """The ``alpha/2`` and ``1 - alpha/2`` percentiles, ignoring NaN replicates."""
    reps = np.asarray(replicates, dtype=np.float64)
    if not np.isfinite(reps).any():
        return float("nan"), float("nan")
    return (float(np.nanpercentile(reps, 100 * alpha / 2)),
            float(np.nanpercentile(reps, 100 * (1 - alpha / 2))))
