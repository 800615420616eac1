"""kill -9 and restart, hot reload: against real `ltrr serve` processes."""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import httpx
import pytest

from .conftest import build_engine

QUERIES = ["drama", "comedy", "crime", "war", "western", "romance", "thriller", "adventure"]


def call(method: str, url: str, **kw) -> httpx.Response:
    """One request as a client should make it: a 503 (a worker still loading, e.g. one the
    server restarted after a crash; it says Retry-After) is retried for up to 60 s."""
    deadline = time.monotonic() + 60
    while True:
        r = httpx.request(method, url, timeout=30, **kw)
        if r.status_code != 503 or time.monotonic() > deadline:
            return r
        time.sleep(float(r.headers.get("retry-after", "1")) / 4)


def status(url: str, headers: dict) -> dict:
    r = call("GET", url + "/admin/status", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def search_and_click(url: str, headers: dict, i: int) -> tuple[str, str]:
    page = call("POST", url + "/search", json={"query": QUERIES[i % len(QUERIES)]}).json()
    item = page["results"][0]["id"]
    r = call("POST", url + "/feedback", json={"event_id": page["event_id"], "events": [{"item": item}]},
             headers=headers)
    assert r.status_code == 200, r.text
    return page["event_id"], item


def test_kill_9_then_restart_reflects_every_acknowledged_feedback_exactly_once(small_engine, server_factory, tmp_path):
    n_half = 15
    # phase A: feedback, graceful stop (final snapshot at journal seq n_half)
    a = server_factory(small_engine, "--snapshot-every", "3600").start()
    clicked = [search_and_click(a.url, a.headers, i) for i in range(n_half)]
    a.stop()
    # phase B: restart restores the snapshot; more feedback; kill -9 before any new snapshot
    b = server_factory(small_engine, "--snapshot-every", "3600").start()
    st = status(b.url, b.headers)
    assert st["applied_seq"] == st["snapshot_seq"] == n_half and st["policy"]["n_updates"] == n_half
    clicked += [search_and_click(b.url, b.headers, i) for i in range(n_half, 2 * n_half)]
    b.kill()
    # phase C: restart replays the journal after the snapshot
    c = server_factory(small_engine, "--snapshot-every", "3600").start()
    st = status(c.url, c.headers)
    n = 2 * n_half
    assert st["journal_head"] == st["applied_seq"] == n
    assert st["policy"]["n_updates"] == n
    assert st["event_log"]["feedback"] == n
    c.stop()
    # the final snapshot's click memory holds each click once (decay over seconds is < 1e-5)
    db = sqlite3.connect(tmp_path / "state" / "snapshot" / "strategies" / "memory" / "memory.sqlite")
    clicks = dict(((q, i), c) for q, i, c in db.execute("SELECT query, item, clicks FROM q2e"))
    total = sum(clicks.values())
    db.close()
    assert total == pytest.approx(n, abs=1e-3)
    log = sqlite3.connect(tmp_path / "state" / "events.sqlite")
    rows = log.execute("SELECT event_id, item FROM feedback ORDER BY event_id").fetchall()
    log.close()
    assert sorted(rows) == sorted(clicked)


def test_admin_reload_swaps_engine_without_failing_requests(tmp_path, server_factory):
    engine_dir = build_engine(tmp_path / "engine")
    s = server_factory(engine_dir, "--snapshot-every", "0.5").start()
    old = status(s.url, s.headers)
    errors: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=s.url, timeout=30) as c:
            while not stop.is_set():
                r = c.post("/search", json={"query": "drama"})
                if r.status_code != 200:
                    errors.append(r.text)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        build_engine(engine_dir, policy={**build_engine.__globals__["SMALL_CONFIG"]["policy"], "type": "softmax",
                                         "params": {}})
        r = httpx.post(s.url + "/admin/reload", headers=s.headers, timeout=60)
        assert r.status_code == 200 and r.json()["reloaded"] is True, r.text
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    new = status(s.url, s.headers)
    assert new["engine_fingerprint"] != old["engine_fingerprint"]
    assert new["policy"]["type"] == "softmax"
    page = httpx.post(s.url + "/search", json={"query": "drama"}, timeout=10).json()
    assert page["model_versions"]["policy"].startswith("softmax@")
    again = httpx.post(s.url + "/admin/reload", headers=s.headers, timeout=60).json()
    assert again["reloaded"] is False and again["detail"] == "engine directory unchanged"


def test_ranker_retrains_in_the_background_and_survives_restart(tmp_path, server_factory):
    # the learned ranker serves as soon as it is trained (no incumbent: this is about retraining)
    engine_dir = build_engine(tmp_path / "engine", ranker={"retrain_every": 12},
                              incumbent={"gate_ranking": False, "gate_plans": False})
    s = server_factory(engine_dir, "--snapshot-every", "3600").start()
    assert status(s.url, s.headers)["ranker_version"] == "prior-rrf"
    for i in range(12):
        search_and_click(s.url, s.headers, i)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        st = status(s.url, s.headers)
        if st["ranker_version"] != "prior-rrf":
            break
        time.sleep(0.1)
    assert st["ranker_version"].startswith("lgbm-1-") and st["ranker_retrain"] == {"every": 12, "unit": "clicks", "since": 0}
    page = httpx.post(s.url + "/search", json={"query": "drama"}, timeout=10).json()
    assert page["model_versions"]["ranker"] == st["ranker_version"]
    manifest = tmp_path / "state" / "snapshot" / "ranker" / "manifest.json"
    deadline = time.monotonic() + 30  # the learner snapshots right after the retrain
    while time.monotonic() < deadline:
        if manifest.exists() and json.loads(manifest.read_text()).get("version") == st["ranker_version"]:
            break
        time.sleep(0.05)
    s.kill()  # the retrain's snapshot holds the new ranker: it survives kill -9
    s2 = server_factory(engine_dir, "--snapshot-every", "3600").start()
    assert status(s2.url, s2.headers)["ranker_version"] == st["ranker_version"]
