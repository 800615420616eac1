"""Target policies given as data: an action-distribution file, or a saved Vowpal Wabbit model.

An action-distribution file holds the target's probability of every action for every logged
round, in Open Bandit Pipeline's ``action_dist`` layout: ``.npy`` of shape ``[n, A]`` or
``[n, A, L]`` (rounds x actions x positions); a leading dimension of 1 applies the same
distribution to every round (a context-free target such as Bernoulli Thompson sampling). In
Parquet: one row per round, either one list column of ``A`` or ``A * L`` probabilities (actions
major) or ``A`` numeric columns.

A saved VW model (``cb_explore_adf``, e.g. written with ``vw -f`` or ``Workspace.save``) is a
target for DSJSON logs: each logged event is parsed by VW itself and the model's
probabilities of its actions are the target's distribution.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ltrr.errors import ConfigError, DataError
from ltrr.offline.estimators import _check_distribution
from ltrr.offline.formats.actionlog import ActionLog

KINDS = ("policy", "dist", "vw")


@dataclass(frozen=True)
class TargetSpec:
    """A target policy to evaluate: a display name, where it comes from and what kind it is
    (``policy``: an ltrr config/engine/policy; ``dist``: an action-distribution file; ``vw``: a
    saved VW model)."""

    name: str
    source: str
    kind: str = "policy"


def parse_targets(policies: Sequence[str | os.PathLike] = (), dists: Sequence[str | os.PathLike] = (),
                  vw_models: Sequence[str | os.PathLike] = ()) -> list[TargetSpec]:
    """Specs from ``[NAME=]PATH`` options, with names from the file names made unique."""
    out: list[TargetSpec] = []
    seen: set[str] = set()
    for kind, items in (("policy", policies), ("dist", dists), ("vw", vw_models)):
        for item in items:
            name, sep, src = str(item).partition("=")
            if not sep or not name or os.sep in name:
                src, name = str(item), ""
            if not name:
                p = Path(src)
                name = p.stem if p.suffix else p.name
            base, i = name, 2
            while name in seen:
                name, i = f"{base}-{i}", i + 1
            seen.add(name)
            out.append(TargetSpec(name, src, kind))
    return out


def load_action_dist(path: str | os.PathLike, log: ActionLog) -> np.ndarray:
    """``float64[n, A, L]``: the target's distribution for every round of ``log``, validated."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such action-distribution file")
    n, A, L = len(log), log.n_actions, log.len_list
    if p.suffix.lower() in (".parquet", ".pq"):
        dist = _parquet_dist(p, A, L)
    else:
        try:
            dist = np.load(p, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DataError(f"{p}: not a .npy array ({exc}); an action distribution is .npy or Parquet") from None
    given = tuple(dist.shape)
    if dist.ndim == 2:
        dist = dist[:, :, None]
    if dist.ndim != 3 or dist.shape[1] != A or dist.shape[0] not in (1, n) or dist.shape[2] not in (1, L):
        raise DataError(f"{p}: action distribution has shape {given}; the log {log.path} needs "
                        f"({n}, {A}) or ({n}, {A}, {L}) (rounds, actions[, positions]); a first dimension of 1 "
                        "applies to every round")
    dist = np.broadcast_to(np.asarray(dist, dtype=np.float64), (n, A, dist.shape[2]))
    if dist.shape[2] == 1 and L > 1:
        dist = np.broadcast_to(dist, (n, A, L))
    try:
        _check_distribution(dist[:1] if dist.strides[0] == 0 else dist)
    except DataError as exc:
        raise DataError(f"{p}: {exc}") from None
    return dist


def _parquet_dist(p: Path, A: int, L: int) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    from ltrr.offline.formats.tables import read_table

    table = read_table(p)
    lists = [c for c in table.column_names if pa.types.is_list(table.column(c).type)
             or pa.types.is_large_list(table.column(c).type) or pa.types.is_fixed_size_list(table.column(c).type)]
    if lists:
        col = table.column(lists[0])
        lens = pc.list_value_length(col).to_numpy(zero_copy_only=False)
        width = int(lens[0]) if lens.size else 0
        if (lens != width).any() or width not in (A, A * L):
            i = int(np.flatnonzero(lens != width)[0]) if (lens != width).any() else 0
            raise DataError(f"{p}:row {i}: list column {lists[0]!r} has {lens[i]} values; expected {A} "
                            f"(actions) or {A * L} (actions x positions)")
        flat = pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.float64)
        return flat.reshape(table.num_rows, A, width // A)
    cols = [table.column(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in table.column_names]
    if len(cols) != A:
        raise DataError(f"{p}: {len(cols)} numeric columns; an action distribution in columns needs one per "
                        f"action ({A})")
    return np.stack(cols, axis=1)[:, :, None]


def vw_distribution(model: str | os.PathLike, log: ActionLog) -> np.ndarray:
    """``float64[n, A, 1]``: a saved VW ``cb_explore_adf`` model's probabilities for each event."""
    if log.raw is None:
        raise ConfigError(f"A VW model target needs a DSJSON log (the events as VW parses them); "
                          f"{log.path} is {log.format}")
    p = Path(model)
    if not p.exists():
        raise DataError(f"{p}: no such VW model file")
    import vowpalwabbit

    try:
        ws = vowpalwabbit.Workspace(f"-i {p} -t --dsjson --quiet")
    except Exception as exc:  # noqa: BLE001 - VW raises a generic error for a bad model file
        raise DataError(f"{p}: not a loadable VW model ({str(exc)[:200]})") from None
    try:
        out = np.zeros((len(log), log.n_actions, 1))
        for i, line in enumerate(log.raw):
            ex = ws.parse(line)
            try:
                pmf = np.asarray(ws.predict(ex), dtype=np.float64)
            finally:
                ws.finish_example(ex)
            if pmf.ndim != 1 or pmf.size > log.n_actions:
                raise DataError(f"{p}: the model's prediction for {log.locate(i)} is not a distribution over "
                                f"its actions (got {pmf.tolist()[:5]}); use a cb_explore_adf model")
            out[i, : pmf.size, 0] = pmf / pmf.sum()
        return out
    finally:
        ws.finish()
