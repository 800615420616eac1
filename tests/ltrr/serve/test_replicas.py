"""Replicas sharing one PostgreSQL (a real server started by the test session, never a mock).

Three `ltrr serve` processes, each with its own state directory as if on its own machine, share
the event log, the feedback journal and the published snapshots. A client streams searches and
clicks over all of them, retrying a feedback call on another replica when its replica dies (safe:
feedback is idempotent). The learner replica and then a follower are killed with SIGKILL mid-
stream; a fourth replica joins late. Every acknowledged click must be counted exactly once: in
the event log, in the policy's update count, in the click memory of the published snapshot.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import httpx
import pytest

from .conftest import Server
from .test_durability import QUERIES, status

N_CLIENTS = 3


class Stream:
    """Client threads: search on one replica, click the top result, retry feedback elsewhere."""

    def __init__(self, replicas: list[Server]):
        self.replicas = replicas
        self.acked: dict[str, str] = {}  # event id -> clicked item, once the feedback got a 200
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(c,)) for c in range(N_CLIENTS)]

    def live(self) -> list[Server]:
        return [r for r in self.replicas if r.proc is not None and r.proc.poll() is None]

    def _run(self, c: int) -> None:
        i = c
        with httpx.Client(timeout=10) as http:
            while not self.stop.is_set():
                i += N_CLIENTS
                live = self.live()
                if not live:
                    time.sleep(0.05)
                    continue
                r = live[i % len(live)]
                try:
                    page = http.post(r.url + "/search", json={"query": QUERIES[i % len(QUERIES)]})
                except httpx.HTTPError:
                    continue
                if page.status_code != 200:
                    continue
                body = page.json()
                fb = {"event_id": body["event_id"], "events": [{"item": body["results"][0]["id"]}]}
                for attempt in range(200):  # until acknowledged, by whichever replica is alive
                    live = self.live()
                    target = live[(i + attempt) % len(live)] if live else r
                    try:
                        ans = http.post(target.url + "/feedback", json=fb, headers=target.headers)
                    except httpx.HTTPError:
                        time.sleep(0.05)
                        continue
                    if ans.status_code == 200:
                        with self.lock:
                            self.acked[body["event_id"]] = fb["events"][0]["item"]
                        break
                    assert ans.status_code == 503, ans.text
                    time.sleep(0.05)

    def wait_for(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < n:
            assert time.monotonic() < deadline, f"only {len(self.acked)} of {n} feedback calls acknowledged"
            time.sleep(0.02)


def find_learner(replicas: list[Server], timeout: float = 30) -> tuple[Server, dict, float]:
    """The replica that reports the learner role, its status, and when it was first seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for r in replicas:
            if r.proc is None or r.proc.poll() is not None:
                continue
            try:
                st = status(r.url, r.headers)
            except (httpx.HTTPError, AssertionError):
                continue
            if st["learner"]:
                return r, st, time.monotonic()
        time.sleep(0.02)
    raise AssertionError("no replica took the learner role")


@pytest.mark.slow
def test_three_replicas_kill_9_learner_and_follower_exactly_once_and_a_late_joiner_converges(
        small_engine, tmp_path, pg_dsn):
    args = ("--snapshot-every", "0.5")
    replicas = [Server(small_engine, tmp_path / f"replica{i}" / "state", *args, dsn=pg_dsn) for i in range(3)]
    for r in replicas:
        r.launch()
    for r in replicas:
        r.wait_ready(90)
    stream = Stream(replicas)
    try:
        learner, _, _ = find_learner(replicas)
        assert sum(status(r.url, r.headers)["learner"] for r in replicas) == 1
        for t in stream.threads:
            t.start()
        stream.wait_for(25)
        head_at_kill = status(learner.url, learner.headers)["journal_head"]
        learner.kill()  # SIGKILL: no shutdown code runs, its lock dies with its connection
        killed_at = time.monotonic()
        survivors = [r for r in replicas if r is not learner]
        new_learner, st, seen_at = find_learner(survivors)
        takeover_s = seen_at - killed_at  # a survivor holds the learner role
        while st["applied_seq"] < head_at_kill:  # ... and has restored + replayed up to the kill
            st = status(new_learner.url, new_learner.headers)
        caught_up_s = time.monotonic() - killed_at
        stream.wait_for(len(stream.acked) + 25)
        follower = next(r for r in survivors if r is not new_learner)
        follower.kill()
        late = Server(small_engine, tmp_path / "replica3" / "state", *args, dsn=pg_dsn).start(90)
        replicas.append(late)  # the stream now sends to it too
        stream.wait_for(len(stream.acked) + 25)
    finally:
        stream.stop.set()
        for t in stream.threads:
            t.join(30)
    acked = dict(stream.acked)
    # the learner catches up; the late joiner adopts its snapshot
    deadline = time.monotonic() + 30
    while True:
        lst = status(new_learner.url, new_learner.headers)
        jst = status(late.url, late.headers)
        if lst["applied_seq"] == lst["journal_head"] == lst["snapshot_seq"] == jst["snapshot_seq"]:
            break
        assert time.monotonic() < deadline, (lst, jst)
        time.sleep(0.1)
    head = lst["journal_head"]
    import psycopg

    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute("SELECT event_id, item FROM ltrr_feedback").fetchall()
        firsts = conn.execute("SELECT COUNT(*) FROM ltrr_journal WHERE first").fetchone()[0]
    stored = dict(rows)
    lost = [e for e in acked if stored.get(e) != acked[e]]
    # every acknowledged click is stored; the stream may have stored a few more whose answer it
    # never saw (its replica died after the commit): they count too, exactly once
    assert lost == [] and len(rows) == len(stored)
    n_events = len(stored)
    assert firsts == n_events == head
    # exactly once in the learned state: one policy update per event, one click in the memory each
    assert lst["policy"]["n_updates"] == n_events, "an acknowledged feedback was lost or double-counted"
    assert lst["journal_refused"] == 0
    assert jst["policy"]["n_updates"] == n_events and jst["engine_fingerprint"] == lst["engine_fingerprint"]
    page = httpx.post(late.url + "/search", json={"query": "drama"}, timeout=10).json()
    assert page["model_versions"]["policy"] == f"epsilon_greedy@{n_events}"
    memory = _published_click_mass(pg_dsn, tmp_path / "fetched")
    assert memory == pytest.approx(n_events, abs=1e-3)
    print(json.dumps({"replicas": 3, "acked": len(acked), "stored": n_events, "lost": len(lost),
                      "double_counted": lst["policy"]["n_updates"] - n_events, "takeover_s": round(takeover_s, 3),
                      "caught_up_s": round(caught_up_s, 3),
                      "late_joiner_policy": page["model_versions"]["policy"]}))
    assert takeover_s < 10.0
    for r in replicas:
        if r.proc and r.proc.poll() is None:
            r.stop()


def _published_click_mass(dsn: str, dest) -> float:
    from ltrr.store.postgres import PostgresSnapshots, connect_pool

    pool = connect_pool(dsn, 1)
    try:
        snaps = PostgresSnapshots(pool)
        snaps.fetch(snaps.latest()["id"], dest)
    finally:
        pool.close()
    db = sqlite3.connect(dest / "strategies" / "memory" / "memory.sqlite")
    try:
        return float(db.execute("SELECT COALESCE(SUM(clicks), 0) FROM q2e").fetchone()[0])
    finally:
        db.close()
