"""Progress on stderr for steps that take a while: what is being done, counts and rate.

Two shapes, both silent for short work and under ``ltrr -q`` (which sets ``LTRR_QUIET=1`` and
``TQDM_DISABLE=1``, so libraries' own tqdm bars are silenced too):

* :func:`step` — a step without inner iterations (fitting a strategy, saving an engine): if it is
  still running after ``delay`` seconds a line says what it is; when it ends, a second line gives
  the time taken and the rate. Steps shorter than ``delay`` print nothing.
* :func:`bar` — a loop with a known count (rounds, records): a tqdm bar that appears after
  ``delay`` seconds.

Nothing is ever written to stdout, which carries only a command's result.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

#: seconds a step runs before it is announced
DELAY = 2.0


def quiet() -> bool:
    """True under ``ltrr -q``."""
    return os.environ.get("LTRR_QUIET", "") not in ("", "0")


def set_quiet(value: bool) -> None:
    """Silence (or not) every progress line and tqdm bar of this process and its children."""
    if value:
        os.environ["LTRR_QUIET"] = "1"
        os.environ["TQDM_DISABLE"] = "1"
    else:
        os.environ.pop("LTRR_QUIET", None)
        os.environ.pop("TQDM_DISABLE", None)


def _say(text: str) -> None:
    print(f"ltrr: {text}", file=sys.stderr, flush=True)


def _count(n: float, unit: str) -> str:
    return f"{n:,.0f} {unit}"


@contextlib.contextmanager
def step(what: str, count: int | None = None, unit: str = "items",
         delay: float = DELAY) -> Iterator[None]:
    """Announce ``what`` (over ``count`` ``unit``) on stderr if it runs longer than ``delay``
    seconds, then report its time and rate; nothing for a short step or under ``-q``."""
    if quiet():
        yield
        return
    over = f" ({_count(count, unit)})" if count is not None else ""
    announced = threading.Event()

    def announce() -> None:
        announced.set()
        _say(f"{what}{over} ...")

    timer = threading.Timer(delay, announce)
    timer.daemon = True
    t0 = time.perf_counter()
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        if announced.is_set():
            dt = time.perf_counter() - t0
            rate = f", {count / dt:,.0f} {unit}/s" if count and dt > 0 else ""
            _say(f"{what}: done in {dt:.1f} s{rate}")


def bar(iterable: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it",
        delay: float = DELAY, **kwargs: Any) -> Iterable[T]:
    """``iterable`` with a tqdm bar on stderr that appears after ``delay`` seconds (none under
    ``-q``)."""
    if quiet():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, delay=delay, file=sys.stderr,
                dynamic_ncols=True, **kwargs)
