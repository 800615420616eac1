"""The engine (``ltrr/``) and the component packages (``strategies/``, ``policies/``,
``simulators/``: the ``files`` of ``[tool.mypy]`` in pyproject.toml) type-check clean under mypy
with the project's configuration, so CI (which runs the suite) fails on a type error as
``make lint`` does.

mypy runs in a subprocess with its incremental cache in the git-ignored ``.mypy_cache/`` of the
checkout: about 60 s of CPU on a cold cache (most of it reading torch's and faiss' type
information), a second or two once it is warm.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ltrr", "strategies", "policies", "simulators")


def test_mypy_reports_no_issue_in_the_checked_packages():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(ROOT / ".mypy_cache")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    n_files = sum(1 for pkg in PACKAGES for _ in (ROOT / pkg).rglob("*.py"))
    assert f"Success: no issues found in {n_files} source files" in proc.stdout, out
