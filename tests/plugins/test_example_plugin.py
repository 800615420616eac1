"""The example strategy plug-in of docs/plugins.md, pip-installed by tests/conftest.py, through
the registry, `ltrr config check`, `build`, `search`, `serve` (real HTTP) and a load where it is
not installed; and the doc shows the package's files as they are."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ltrr import registry

HERE = Path(__file__).resolve().parent
PACKAGE = HERE / "example_trigram"
DOC = HERE.parents[1] / "docs" / "plugins.md"
REPO = HERE.parents[1]


def ltrr(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ltrr.cli", *args], cwd=cwd, capture_output=True,
                          text=True, env=env or os.environ.copy(), timeout=600)


def doc_block(lang: str, start: str) -> str:
    for m in re.finditer(rf"^```{lang}\n(.*?)^```", DOC.read_text(encoding="utf-8"), flags=re.S | re.M):
        if m.group(1).startswith(start):
            return m.group(1)
    raise AssertionError(f"docs/plugins.md has no ```{lang} block starting with {start!r}")


def test_the_doc_shows_the_package_files_verbatim():
    assert doc_block("toml", "[build-system]") == (PACKAGE / "pyproject.toml").read_text(encoding="utf-8")
    module = PACKAGE / "src" / "ltrr_example_trigram" / "__init__.py"
    assert doc_block("python", '"""An example ltrr') == module.read_text(encoding="utf-8")


def test_the_entry_point_is_found_with_its_distribution():
    assert "trigram" in registry.names("strategy")
    p = registry.provenance("strategy", "trigram")
    assert (p.source, p.distribution, p.version, p.target) == (
        "entry_point", "ltrr-example-trigram", "0.1.0", "ltrr_example_trigram:TrigramTitles")
    klass = registry.get("strategy", "trigram")
    assert klass.__module__ == "ltrr_example_trigram"
    assert registry.get("strategy", "ltrr_example_trigram:TrigramTitles") is klass
    # named by its path in a config, it is still traced to its distribution for the manifest
    assert registry.plugin_records([("strategy", "ltrr_example_trigram:TrigramTitles")]) == [{
        "kind": "strategy", "name": "ltrr_example_trigram:TrigramTitles", "source": "path",
        "target": "ltrr_example_trigram:TrigramTitles", "distribution": "ltrr-example-trigram", "version": "0.1.0"}]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, movie_catalog_path) -> Path:
    """The doc's config next to a 300-film slice of the shipped catalog."""
    d = tmp_path_factory.mktemp("plugin")
    lines = movie_catalog_path.read_text(encoding="utf-8").splitlines()[:300]
    (d / "catalog.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (d / "trigram.toml").write_text(doc_block("toml", "# trigram.toml"), encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def engine_dir(workdir) -> Path:
    res = ltrr("config", "check", "trigram.toml", cwd=workdir)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("trigram.toml: ok (300 catalog items; strategy bm25, strategy trigram, "
                                 "policy epsilon_greedy, ranker lambdamart)")
    res = ltrr("build", "--config", "trigram.toml", "--out", "engine", cwd=workdir)
    assert res.returncode == 0, res.stderr
    return workdir / "engine"


def test_config_check_names_a_bad_plugin_parameter(workdir):
    bad = workdir / "bad.toml"
    bad.write_text((workdir / "trigram.toml").read_text().replace("min_score = 0.3", "min_scor = 0.3"))
    res = ltrr("config", "check", "bad.toml", cwd=workdir)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr == ("error: bad.toml: strategies[1] (titles).params: unknown key 'min_scor'; "
                          "allowed keys: min_score, text_fields\n")


def test_build_records_the_plugin_and_search_uses_it(engine_dir, workdir):
    manifest = json.loads((engine_dir / "manifest.json").read_text())
    assert manifest["ltrr_version"] == "0.1.0"
    assert manifest["plugins"] == [{"kind": "strategy", "name": "trigram", "source": "entry_point",
                                    "target": "ltrr_example_trigram:TrigramTitles",
                                    "distribution": "ltrr-example-trigram", "version": "0.1.0"}]
    res = ltrr("search", "we liv in publik", "--engine", "engine", "--k", "5", cwd=workdir)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert list(out["plan"]["depths"]) == ["bm25", "titles"]
    assert out["results"][0]["title"] == "We Live in Public" and "titles" in out["results"][0]["provenance"]


def test_a_typo_finds_the_title_through_the_plugin(engine_dir, workdir):
    from ltrr.engine import Engine

    engine = Engine.load(engine_dir)
    try:
        row = next(i for i, t in enumerate(engine.catalog.titles) if len(t) >= 12)
        title = engine.catalog.titles[row]
        typo = title[:6] + title[7:]  # one letter dropped
        assert engine.strategies["titles"].retrieve([typo], 5).ids[0][0] == row
    finally:
        engine.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_loads_the_plugin_over_http(engine_dir, workdir):
    port = _free_port()
    log = (workdir / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "ltrr.cli", "serve", "--engine", str(engine_dir),
                             "--state", str(workdir / "state"), "--port", str(port)],
                            cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, (workdir / "serve.log").read_text()
            try:
                if httpx.get(url + "/readyz", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        r = httpx.post(url + "/search", json={"query": "we liv in publik", "k": 5}, timeout=30)
        assert r.status_code == 200, r.text
        body = r.json()
        assert list(body["plan"]["depths"]) == ["bm25", "titles"]
        found = {res["title"]: res["provenance"] for res in body["results"]}
        assert "titles" in found["We Live in Public"]  # the first film of the catalog, by trigrams
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()


def test_loading_without_the_plugin_names_the_distribution_to_install(engine_dir, workdir):
    site = os.environ["LTRR_TEST_PLUGINS"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in os.environ["PYTHONPATH"].split(os.pathsep) if p and p != site)}
    res = ltrr("search", "alien", "--engine", "engine", cwd=workdir, env=env)
    assert res.returncode == 2 and res.stdout == ""
    names = ", ".join(n for n in registry.names("strategy") if n not in ("trigram", "conformance_title_prefix")
                      and registry.provenance("strategy", n).source == "builtin")
    assert res.stderr == (
        "error: engine/manifest.json: strategy 'trigram' comes from the plug-in distribution "
        "ltrr-example-trigram 0.1.0, which cannot be loaded here (Unknown strategy 'trigram'; "
        f"registered strategy names: {names}); install it: pip install 'ltrr-example-trigram==0.1.0'\n")
