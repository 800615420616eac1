"""Conditions recorded beside every timing: library versions, native thread pools, load average.

    from benchmarks.conditions import conditions
    print(json.dumps({"bench": ..., **conditions()}))
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

from ltrr.threads import native_thread_report

ROOT = Path(__file__).resolve().parents[1]
#: the sources that decide a simulated result (a benchmark adds its own file)
CODE_DIRS = ("ltrr", "simulators", "strategies", "policies")

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


def peak_rss_mb() -> float:
    """This process's peak RSS in MB (``VmHWM``, which restarts at exec; ``ru_maxrss`` would
    carry the parent's RSS at the time of the fork)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def conditions(extra: tuple[str, ...] = ()) -> dict:
    """Versions, the thread settings of every loaded pool, cores and the 1/5/15-min load."""
    return {"versions": versions(extra), "threads": native_thread_report().as_dict(),
            "cores": os.cpu_count(), "load_average": load_average()}


def code_version(extra: tuple[str, ...] = ()) -> str:
    """Git commit plus a hash of the Python sources that decide the results (``CODE_DIRS`` and
    ``extra`` paths relative to the repo root), so a result cache keyed by it is invalidated by
    any code change, committed or not."""
    h = hashlib.sha1()
    for entry in (*CODE_DIRS, *extra):
        p = ROOT / entry
        for f in sorted([p] if p.is_file() else p.rglob("*.py")):
            h.update(f.relative_to(ROOT).as_posix().encode())
            h.update(f.read_bytes())
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        head = "nogit"
    return f"{head}+{h.hexdigest()[:10]}"
