"""Shared fixtures: small slices of the shipped data, built once per session."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# ONNX exports and the embedding cache go to a directory of this test session, not the user's
# cache (set LTRR_CACHE_DIR to keep exports between runs)
_OWN_CACHE = "LTRR_CACHE_DIR" not in os.environ
if _OWN_CACHE:
    os.environ["LTRR_CACHE_DIR"] = tempfile.mkdtemp(prefix="ltrr-test-cache-")


def pytest_sessionfinish(session, exitstatus):
    if _OWN_CACHE:
        shutil.rmtree(os.environ["LTRR_CACHE_DIR"], ignore_errors=True)


REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def movie_catalog_path() -> Path:
    return DATA / "movies" / "catalog.jsonl"


@pytest.fixture(scope="session")
def small_movies():
    """The first 800 films of the shipped catalog."""
    from ltrr.catalog import Catalog

    return Catalog.from_jsonl(DATA / "movies" / "catalog.jsonl", limit=800)


@pytest.fixture(scope="session")
def single_film_director(small_movies) -> tuple[str, int]:
    """A director (two or more words) with exactly one film among the 800, and that film's row:
    the query then has one right answer, which a titles-only model cannot find from the text."""
    directors = small_movies.compose(["directors"])
    counts: dict[str, int] = {}
    for d in directors:
        counts[d] = counts.get(d, 0) + 1
    for row, d in enumerate(directors):
        if d.strip() and counts[d] == 1 and len(d.split()) >= 2:
            return d, row
    raise AssertionError("no single-film director in the fixture")


#: plug-in packages inside the tests, pip-installed before collection so that every suite that
#: walks the registry (tests/strategies/test_conformance.py) sees their entry points
PLUGIN_PACKAGES = (REPO / "tests" / "plugins" / "example_trigram",)


def pytest_configure(config) -> None:
    """Install the example plug-ins (``pip install --target``, cached by their sources' hash)
    and put them on ``sys.path`` and ``PYTHONPATH`` (subprocesses such as ``ltrr serve``).

    ``--target`` keeps the shared virtual environment untouched: the packages are installed for
    this test session only, through pip and their own pyproject, as a user would install them.
    """
    import hashlib
    import importlib
    import shutil
    import subprocess
    import sys

    digest = hashlib.sha256()
    for pkg in PLUGIN_PACKAGES:
        for f in sorted(p for p in pkg.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            digest.update(str(f.relative_to(pkg)).encode() + b"\0" + f.read_bytes())
    cache = getattr(config, "cache", None)  # None under -p no:cacheprovider
    if cache is not None:
        base = Path(cache.mkdir("ltrr-plugins"))
    else:
        import tempfile

        base = Path(tempfile.gettempdir()) / "ltrr-test-plugins"
        base.mkdir(exist_ok=True)
    target = base / digest.hexdigest()[:16]
    if not (target / ".complete").exists():
        tmp = base / f".tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        for pkg in PLUGIN_PACKAGES:
            src = tmp / "src" / pkg.name  # built from a copy: the build leaves nothing in the tree
            shutil.copytree(pkg, src, ignore=shutil.ignore_patterns("__pycache__"))
            subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                            "--no-build-isolation", "--no-index", "--target", str(tmp / "site"),
                            str(src)], check=True)
        shutil.rmtree(tmp / "src")
        (tmp / ".complete").write_text("")
        if target.exists():
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, target)
    site = str(target / "site")
    sys.path.insert(0, site)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [site, os.environ.get("PYTHONPATH")]))
    os.environ["LTRR_TEST_PLUGINS"] = site
    importlib.invalidate_caches()
