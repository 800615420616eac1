"""More than one worker process: one learner, followers on its snapshots, reload reaching all."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from .conftest import SMALL_CONFIG, build_engine
from .test_durability import search_and_click, status

N_2W = 40


def test_two_workers_share_one_learner_and_unique_event_ids(small_engine, server_factory):
    s = server_factory(small_engine, "--snapshot-every", "0.3", workers=2).start()

    def one(i: int) -> str:
        return search_and_click(s.url, s.headers, i)[0]

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(one, range(N_2W)))
    assert len(set(ids)) == N_2W
    seen: dict[int, dict] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        st = status(s.url, s.headers)
        seen[st["pid"]] = st
        learners = [v for v in seen.values() if v["learner"]]
        if learners and learners[-1]["applied_seq"] == N_2W and all(v["snapshot_seq"] == N_2W for v in seen.values()) \
                and len(seen) == 2:
            break
        time.sleep(0.1)
    assert sum(v["learner"] for v in seen.values()) == 1
    learner = next(v for v in seen.values() if v["learner"])
    assert learner["policy"]["n_updates"] == N_2W and learner["event_log"]["feedback"] == N_2W
    # the other worker follows the learner's snapshot
    for v in seen.values():
        assert v["snapshot_seq"] == N_2W and v["policy"]["n_updates"] == N_2W, seen


def test_reload_received_by_any_worker_reaches_every_worker(tmp_path, server_factory):
    engine_dir = build_engine(tmp_path / "engine")
    s = server_factory(engine_dir, "--snapshot-every", "0.3", workers=2).start()
    old = status(s.url, s.headers)["engine_fingerprint"]
    build_engine(engine_dir, policy={**SMALL_CONFIG["policy"], "type": "softmax", "params": {}})
    r = httpx.post(s.url + "/admin/reload", headers=s.headers, timeout=90)
    assert r.status_code == 200 and r.json()["reloaded"] is True, r.text
    seen: dict[int, dict] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (len(seen) == 2 and all(
            v["engine_fingerprint"] != old for v in seen.values())):
        st = status(s.url, s.headers)
        seen[st["pid"]] = st
        time.sleep(0.05)
    assert len(seen) == 2, "both workers should have answered"
    for v in seen.values():
        assert v["engine_fingerprint"] != old and v["policy"]["type"] == "softmax", seen
    page = httpx.post(s.url + "/search", json={"query": "drama"}, timeout=10).json()
    assert page["model_versions"]["policy"].startswith("softmax@")
