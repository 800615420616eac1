"""Data flows one way: nothing in ``ltrr`` imports the component packages (strategies, policies)
or the simulators; they are reached through the registry's ``"module:Class"`` names only."""

from __future__ import annotations

import ast
from pathlib import Path

LTRR = Path(__file__).resolve().parents[2] / "ltrr"
COMPONENT_PACKAGES = ("strategies", "policies", "simulators")


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every module an ``import`` statement in ``path`` names (top level and nested)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return out


def test_ltrr_imports_no_component_package():
    bad = [f"{p.relative_to(LTRR.parent)}:{line}: imports {mod}"
           for p in sorted(LTRR.rglob("*.py")) for line, mod in imports_of(p)
           if mod.split(".")[0] in COMPONENT_PACKAGES]
    assert not bad, "\n".join(bad)


def test_the_check_sees_nested_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from strategies.bm25 import BM25\n    import policies.fixed\n")
    assert imports_of(f) == [(2, "strategies.bm25"), (3, "policies.fixed")]
