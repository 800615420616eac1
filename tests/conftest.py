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
