"""The learner worker dies (kill -9): another worker takes the lock, restores and replays."""

from __future__ import annotations

import os
import signal
import time

import httpx

from .test_durability import search_and_click, status


def find_learner(url: str, headers: dict, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = status(url, headers)
        if st["learner"]:
            return st
        time.sleep(0.05)
    raise AssertionError("no learner answered")


def test_follower_takes_over_when_the_learner_is_killed(small_engine, server_factory):
    s = server_factory(small_engine, "--snapshot-every", "3600", workers=2).start()
    for i in range(10):
        search_and_click(s.url, s.headers, i)
    learner = find_learner(s.url, s.headers)
    os.kill(learner["pid"], signal.SIGKILL)  # its flock is released by the kernel
    for i in range(10, 20):  # served by the surviving (or restarted) worker; all acknowledged
        for _ in range(50):
            try:
                search_and_click(s.url, s.headers, i)
                break
            except (httpx.HTTPError, KeyError):
                time.sleep(0.1)
        else:
            raise AssertionError("the service stopped answering after the learner died")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        st = find_learner(s.url, s.headers)
        if st["pid"] != learner["pid"] and st["applied_seq"] == st["journal_head"] == 20:
            break
        time.sleep(0.1)
    assert st["pid"] != learner["pid"]
    assert st["applied_seq"] == st["journal_head"] == 20
    assert st["policy"]["n_updates"] == 20 and st["event_log"]["feedback"] == 20
