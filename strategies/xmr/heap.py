"""Hand the heap's free memory back to the operating system between training phases.

numpy's arrays above glibc's (adaptive, up to 32 MB) mmap threshold are mapped and unmapped
on their own, but the many smaller ones of a training phase come from the heap's arenas, and
free heap memory stays in the process: RSS after a phase stays near the phase's peak, and the
next phase's peak starts from there. glibc's ``malloc_trim(0)`` returns every arena's free
pages to the kernel (``madvise``), which lowers the RSS the next phase starts from. Elsewhere
(musl, macOS, Windows) :func:`release_free_heap` does nothing.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable

__all__ = ["release_free_heap"]


def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:  # the process's own symbols (libc included); no find_library, which runs ldconfig
        fn = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


_TRIM = _malloc_trim()


def release_free_heap() -> bool:
    """Return the heap's free pages to the OS (glibc ``malloc_trim(0)``); ``False`` where it
    is not available. Call it after a phase has dropped its large intermediates."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True
