"""Returning free heap memory to the OS: RSS falls after freeing many small arrays (glibc)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from strategies.xmr import heap


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(heap._TRIM is None, reason="glibc malloc_trim not available")
def test_freed_small_blocks_go_back_to_the_os():
    # many arrays below the mmap threshold live in the heap; freeing all but a few scattered
    # ones leaves free pages glibc keeps until trimmed
    blocks = [np.ones(8_000) for _ in range(6_000)]  # 64 kB each, 384 MB of heap
    keep = blocks[::500]
    del blocks
    before = _rss_mb()
    assert heap.release_free_heap() is True
    after = _rss_mb()
    assert before - after > 200, (before, after)
    assert all(k[0] == 1.0 for k in keep)


def test_no_trim_without_glibc(monkeypatch):
    monkeypatch.setattr(heap, "_TRIM", None)
    assert heap.release_free_heap() is False
    if not sys.platform.startswith("linux"):
        assert heap._malloc_trim() is None
