"""Writing a foreign (action) log in the normalized column layout the ``columns`` reader reads
without a mapping: ``action``, ``position``, ``reward``, ``propensity`` and the context as ``x``
(a list column in JSONL/Parquet) or ``x_0..x_{d-1}`` (CSV). Written to a temporary file and
renamed, so a failed conversion leaves nothing."""

from __future__ import annotations

import os
from pathlib import Path

from ltrr.offline.formats.actionlog import ActionLog
from ltrr.offline.formats.tables import table_kind


def write_action_log(log: ActionLog, dst: str | os.PathLike) -> int:
    """Write ``log`` to ``dst`` (format by suffix); returns the number of rounds written."""
    import pyarrow as pa

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    kind = table_kind(dst)
    cols = {"action": pa.array(log.action), "position": pa.array(log.position),
            "reward": pa.array(log.reward), "propensity": pa.array(log.pscore)}
    if log.labels is not None:
        cols["action_id"] = pa.array([log.labels[a] for a in log.action])
    if kind == "csv":
        for j in range(log.context.shape[1]):
            cols[f"x_{j}"] = pa.array(log.context[:, j])
    else:
        d = log.context.shape[1]
        offsets = pa.array((log.context.shape[0] + 1) * [0], pa.int32()) if d == 0 else None
        if d == 0:
            cols["x"] = pa.ListArray.from_arrays(offsets, pa.array([], pa.float64()))
        else:
            import numpy as np

            cols["x"] = pa.ListArray.from_arrays(pa.array(np.arange(0, d * len(log) + 1, d, dtype=np.int32)),
                                                 pa.array(log.context.ravel()))
    table = pa.table(cols)
    tmp = dst.with_name(f".{dst.stem}.tmp-{os.getpid()}{dst.suffix}")
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, tmp, compression="zstd")
        elif kind == "csv":
            import pyarrow.csv as pcsv

            pcsv.write_csv(table, tmp)
        else:
            import json

            with tmp.open("w", encoding="utf-8") as fh:
                for row in table.to_pylist():
                    fh.write(json.dumps(row, separators=(",", ":")) + "\n")
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return len(log)
