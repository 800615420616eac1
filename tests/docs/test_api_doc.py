"""docs/api.md runs: every ```python block, in order, in one namespace, in a temporary working
directory (its asserts are the checks), so the documented API cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(line, code)`` of every fenced ```python block."""
    return [(text[: m.start()].count("\n") + 2, m.group(1))
            for m in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M)]


def test_the_doc_has_examples_for_every_section():
    text = DOC.read_text(encoding="utf-8")
    blocks = python_blocks(text)
    assert len(blocks) >= 8
    code = "\n".join(c for _, c in blocks)
    for call in ("parse_config(", "check_config(", "Engine.from_config(", ".search(", ".feedback(",
                 ".save(", "Engine.load(", "write_run(", "evaluate(", "replay(", "target_specs("):
        assert call in code, f"docs/api.md shows no {call}"


@pytest.mark.slow
def test_every_example_of_docs_api_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_api"}
    for line, code in python_blocks(DOC.read_text(encoding="utf-8")):
        try:
            exec(compile(code, f"{DOC}:{line}", "exec"), namespace)  # noqa: S102 - the doc's own code
        except Exception as exc:
            raise AssertionError(f"docs/api.md block at line {line} failed: {exc!r}") from exc
