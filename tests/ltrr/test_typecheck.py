"""``ltrr/`` type-checks clean under mypy with the project's configuration (``[tool.mypy]`` in
pyproject.toml), so CI (which runs the suite) fails on a type error as ``make lint`` does.

mypy runs in a subprocess with its incremental cache in the git-ignored ``.mypy_cache/`` of the
checkout: about 20 s of CPU on a cold cache, a second or two once it is warm.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_reports_no_issue_in_ltrr():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(ROOT / ".mypy_cache")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Success: no issues found" in proc.stdout, out
