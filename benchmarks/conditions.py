"""Conditions recorded beside every timing: library versions, native thread pools, load average.

    from benchmarks.conditions import conditions
    print(json.dumps({"bench": ..., **conditions()}))
"""

from __future__ import annotations

import importlib.metadata
import os
import platform

from ltrr.threads import native_thread_report

LIBRARIES = ("numpy", "scipy", "faiss-cpu", "torch", "sentence-transformers", "onnxruntime",
             "lightgbm", "threadpoolctl")


def versions(extra: tuple[str, ...] = ()) -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in (*LIBRARIES, *extra):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def conditions(extra: tuple[str, ...] = ()) -> dict:
    """Versions, the thread settings of every loaded pool, cores and the 1/5/15-min load."""
    return {"versions": versions(extra), "threads": native_thread_report().as_dict(),
            "cores": os.cpu_count(), "load_average": load_average()}
