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

