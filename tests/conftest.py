"""Shared fixtures: small slices of the shipped data, built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

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
