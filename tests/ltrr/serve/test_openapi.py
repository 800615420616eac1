"""The OpenAPI document says exactly what the service does: schemathesis, every check, against a
real `ltrr serve` (coverage, fuzzing and stateful phases: a search's event id chained into
feedback through the document's link). Longer runs: `benchmarks/serve.py --schemathesis S`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from .conftest import Server

CONFIG = Path(__file__).with_name("schemathesis.toml")


def run_schemathesis(url: str, token: str, seconds: float, cwd: Path, seed: int = 1) -> tuple[int, str]:
    """Run the schemathesis CLI with every check for ``seconds``; (exit code, output)."""
    exe = shutil.which("schemathesis", path=os.path.dirname(sys.executable)) or shutil.which("schemathesis")
    if exe is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[dev]')")
    cmd = [exe, "--config-file", str(CONFIG), "--no-color", "run", f"{url}/openapi.json", "--checks", "all",
           "-H", f"Authorization: Bearer {token}", "--max-time", str(int(seconds)), "--workers", "2",
           "--request-timeout", "30", "--seed", str(seed), "--generation-database", "none"]
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=seconds + 300)
    return r.returncode, r.stdout + r.stderr


def test_schemathesis_all_checks_pass_with_zero_failures(small_engine, tmp_path):
    s = Server(small_engine, tmp_path / "state", "--snapshot-every", "1").start()
    try:
        code, out = run_schemathesis(s.url, s.token, 30, tmp_path)
        assert httpx.get(s.url + "/healthz", timeout=10).status_code == 200
    finally:
        s.stop()
    summary = re.search(r"(\d+) generated, (\d+) passed", out)
    assert code == 0 and summary and summary.group(1) == summary.group(2), out[-6000:]
    assert "Stateful" in out and re.search(r"API Links:\s+1 covered", out), out[-3000:]
    print(summary.group(0))
