"""The service against hostile or careless clients and operators (issue 17's cases, each checked
for real): feedback an engine cannot learn from, oversized contexts, slow clients, a vanished
engine directory, readiness while loading, logs, zero counters, stale temp directories, blank
tokens, paths in error bodies."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from ltrr.errors import IncompatibleEventError
from ltrr.serve.app import create_app, redact_paths
from ltrr.serve.state import ServeSettings, ServingState
from ltrr.store.persist import remove_stale_temp_dirs
from ltrr.types import Feedback

from .conftest import build_engine
from .test_durability import status

FEW_FEATURES = ["bias", "n_tokens", "n_chars"]


def test_feedback_for_an_event_decided_before_a_reload_to_another_context_size_is_409(tmp_path, server_factory):
    engine_dir = build_engine(tmp_path / "engine")
    s = server_factory(engine_dir, "--snapshot-every", "0.5").start()
    before = httpx.post(s.url + "/search", json={"query": "drama"}, timeout=10).json()
    build_engine(engine_dir, context_features=FEW_FEATURES)
    r = httpx.post(s.url + "/admin/reload", headers=s.headers, timeout=60)
    assert r.status_code == 200 and r.json()["reloaded"] is True, r.text
    st0 = status(s.url, s.headers)
    for _ in range(3):  # a retrying client is refused every time; nothing is stored or learned
        r = httpx.post(s.url + "/feedback", headers=s.headers, timeout=10,
                       json={"event_id": before["event_id"], "events": [{"item": before["results"][0]["id"]}]})
        assert r.status_code == 409, r.text
        assert re.fullmatch(r"Event '.+' was decided with \d+ context features; this engine's policy uses 3 "
                            r"\(the engine was replaced since\): its feedback cannot be learned from",
                            r.json()["detail"])
    st1 = status(s.url, s.headers)
    assert (st1["journal_head"], st1["policy"]["n_updates"], st1["event_log"]["feedback"]) == \
        (st0["journal_head"], st0["policy"]["n_updates"], st0["event_log"]["feedback"])
    after = httpx.post(s.url + "/search", json={"query": "drama"}, timeout=10).json()
    r = httpx.post(s.url + "/feedback", headers=s.headers, timeout=10,
                   json={"event_id": after["event_id"], "events": [{"item": after["results"][0]["id"]}]})
    assert r.status_code == 200 and r.json()["applied"] is True and r.json()["policy_updated"] is True


def test_a_journal_entry_the_learner_cannot_apply_is_refused_durably_not_skipped(tmp_path):
    """A follower still on the old engine acknowledges feedback for an old event after the learner
    reloaded another context size: the learner records the refusal with its reason."""
    engine_dir = build_engine(tmp_path / "engine")
    common = {"engine_dir": str(engine_dir), "state_dir": str(tmp_path / "state"), "snapshot_every_s": 0.05}
    learner = ServingState(ServeSettings(**common, poll_s=0.05))
    follower = ServingState(ServeSettings(**common, poll_s=3600))  # does not follow the reload in time
    learner.start()
    follower.start()
    try:
        assert learner.is_learner and not follower.is_learner
        d = follower.engine.search("drama")
        build_engine(engine_dir, context_features=FEW_FEATURES)
        assert learner.reload()["reloaded"] is True
        out = follower.feedback(Feedback.clicks(d.event_id, [d.page_ids[0]]))
        assert out["journal_seq"] == 1 and out["applied"] is False
        deadline = time.monotonic() + 30
        # the refusal is written, then the learner's position moves past the entry: wait for both
        while (not learner.engine.events.journal_refusals() or learner.applied_seq < 1) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        [(seq, reason)] = learner.engine.events.journal_refusals()
        assert seq == 1 and "context features; this engine's policy uses 3" in reason
        assert learner.applied_seq == 1 and learner.engine.policy.n_updates_ == 0
        assert learner.metrics.journal_refused.value() == 1 and learner.status()["journal_refused"] == 1
        # the learner itself refuses such feedback before storing it
        with pytest.raises(IncompatibleEventError):
            learner.feedback(Feedback.clicks(d.event_id, [d.page_ids[1]]))
    finally:
        follower.stop()
        learner.stop()


@pytest.fixture(scope="module")
def guarded(small_engine, tmp_path_factory):
    from .conftest import Server

    s = Server(small_engine, tmp_path_factory.mktemp("guarded") / "state", "--header-timeout", "2",
               "--body-timeout", "2", "--limit-concurrency", "40").start()
    yield s
    s.stop()


def test_context_and_query_are_bounded_and_blank_queries_refused(guarded):
    url = guarded.url
    before = status(url, guarded.headers)["event_log"]["events"]
    cases = [
        ({"query": "x", "context": {f"k{i}": 1 for i in range(33)}}, r"context: Dictionary should have at most 32 items.*"),
        ({"query": "x", "context": {"k" * 65: 1}}, r"context\.k{65}\.\[key\]: String should have at most 64 characters"),
        ({"query": "x", "context": {"k": "v" * 257}}, r"context\.k: none of the accepted types matched \(String should "
                                                      r"have at most 256 characters; .*\)"),
        ({"query": "x" * 1001}, r"query: String should have at most 1000 characters"),
        ({"query": " \t\n "}, r"query: Input should contain a character that is not whitespace"),
        ({"query": "x", "k": "10"}, r"k: Input should be a valid integer \(a JSON number, not a str\)"),
    ]
    for body, message in cases:
        r = httpx.post(url + "/search", json=body, timeout=10)
        assert r.status_code == 422, (body, r.text)
        assert re.fullmatch("Invalid request: " + message, r.json()["detail"]), r.json()["detail"]
    r = httpx.post(url + "/search", json={"query": "x", "context": {"k": "v" * 1_100_000}}, timeout=30)
    assert r.status_code == 413
    assert status(url, guarded.headers)["event_log"]["events"] == before  # nothing was logged


def _slow_client(kind: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", _slow_client.port), timeout=10)
    if kind == "headers":
        s.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\n")
    elif kind == "body":
        s.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100000\r\n\r\n{\"query\": \"")
    return s


def _closed_by_server(s: socket.socket, deadline: float) -> bool:
    s.settimeout(max(deadline - time.monotonic(), 0.01))
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_slow_clients_are_disconnected_and_the_connection_limit_holds(guarded):
    _slow_client.port = guarded.port
    socks = [_slow_client(kind) for kind in ("idle", "headers", "body") for _ in range(20)]
    stop = threading.Event()

    def dribble() -> None:  # slow loris: a byte now and then, never a complete request
        while not stop.wait(0.3):
            for s in socks:
                with contextlib.suppress(OSError):  # closed by the server: what we wait for
                    s.send(b"a")

    t = threading.Thread(target=dribble)
    t.start()
    try:
        r = httpx.post(guarded.url + "/search", json={"query": "drama"}, timeout=10)
        # 60 held connections are over the limit of 40: refused at once instead of queued forever
        assert r.status_code == 503 and r.text == "Service Unavailable"
        deadline = time.monotonic() + 8
        closed = [_closed_by_server(s, deadline) for s in socks]
    finally:
        stop.set()
        t.join()
        for s in socks:
            s.close()
    assert all(closed), f"{closed.count(False)} of {len(closed)} slow connections still open after 8 s"
    r = httpx.post(guarded.url + "/search", json={"query": "drama"}, timeout=10)
    assert r.status_code == 200


def test_reload_of_a_missing_engine_directory_is_503_without_a_path(tmp_path, server_factory):
    engine_dir = build_engine(tmp_path / "engine")
    s = server_factory(engine_dir).start()
    shutil.move(engine_dir, tmp_path / "moved")
    try:
        r = httpx.post(s.url + "/admin/reload", headers=s.headers, timeout=30)
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert re.fullmatch(r"The engine directory 'engine' is missing or has no manifest\.json; still serving "
                            r"engine [0-9a-f]{16}", r.json()["detail"])
        assert str(tmp_path) not in r.text
        assert httpx.post(s.url + "/search", json={"query": "drama"}, timeout=10).status_code == 200
    finally:
        shutil.move(tmp_path / "moved", engine_dir)


def test_every_worker_logs_with_time_level_and_pid_at_the_chosen_level(small_engine, server_factory, guarded):
    s = server_factory(small_engine, "--log-level", "info", workers=2).start()
    s.stop()
    text = s.log.read_text()
    pids = set(re.findall(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO \[pid (\d+)\] ltrr\.serve: serving engine "
                          r"[0-9a-f]{16} \(sqlite store, (?:learner|follower)\)$", text, re.M))
    assert len(pids) == 2, text[-3000:]
    # at the default level (warning) nothing below warning is written
    assert " INFO " not in guarded.log.read_text()


def _settings(engine_dir, state_dir) -> ServeSettings:
    return ServeSettings(engine_dir=str(engine_dir), state_dir=str(state_dir))


def test_readyz_is_503_until_the_engine_is_loaded_while_liveness_answers(small_engine, tmp_path, monkeypatch):
    gate = threading.Event()
    load = ServingState._load_engine

    def slow_load(self):
        gate.wait(60)
        return load(self)

    monkeypatch.setattr(ServingState, "_load_engine", slow_load)
    with TestClient(create_app(_settings(small_engine, tmp_path / "state"))) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json() == {"status": "starting", "detail": "the engine is loading"}
        r = c.post("/search", json={"query": "drama"})
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json() == {"detail": "The service is starting: the engine is not loaded yet; retry shortly"}
        gate.set()
        deadline = time.monotonic() + 60
        while c.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert c.post("/search", json={"query": "drama"}).status_code == 200
        text = c.get("/metrics").text
    for family in ("ltrr_policy_updates_total", "ltrr_journal_entries_applied_total", "ltrr_journal_refused_total",
                   "ltrr_journal_apply_errors_total", "ltrr_ranker_retrains_total", "ltrr_events_pruned_total",
                   "ltrr_feedback_lag_seconds_count"):
        assert re.search(rf'^{family}{{pid="\d+"}} 0\.0$', text, re.M), family  # exported at 0


def test_stale_snapshot_temp_directories_are_removed_at_start(small_engine, tmp_path):
    state_dir = tmp_path / "state"
    stale = [state_dir / ".snapshot.tmp-999999999-abc", state_dir / ".snapshot.tmp-k2j3", state_dir / ".snapshot.old-999999999"]
    for d in stale:
        (d / "policy").mkdir(parents=True)
    st = ServingState(_settings(small_engine, state_dir))
    st.start()
    try:
        assert st.is_learner and not any(d.exists() for d in stale)
        assert (state_dir / "snapshot" / "manifest.json").exists()
    finally:
        st.stop()


def test_temp_directories_of_live_writers_are_kept(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        mine, theirs, dead = (tmp_path / f".snapshot.tmp-{pid}-x" for pid in (os.getpid(), live.pid, 999999999))
        for d in (mine, theirs, dead):
            d.mkdir()
        assert remove_stale_temp_dirs(tmp_path, "snapshot") == [dead]
        assert mine.exists() and theirs.exists()
        assert sorted(remove_stale_temp_dirs(tmp_path, "snapshot", any_owner=True)) == sorted([mine, theirs])
    finally:
        live.kill()
        live.wait()


def test_a_blank_token_is_refused(small_engine, tmp_path):
    env = {**os.environ, "LTRR_TOKEN": "   "}
    r = subprocess.run([sys.executable, "-m", "ltrr.cli", "serve", "--engine", str(small_engine), "--host", "0.0.0.0",
                        "--state", str(tmp_path / "state")], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "$LTRR_TOKEN is set but blank: set a token or unset it" in r.stderr


def test_error_messages_lose_their_absolute_paths():
    assert redact_paths("/srv/data/engines/demo: holds a 'x', expected a 'engine'") == \
        "demo: holds a 'x', expected a 'engine'"
    assert redact_paths("checksum of /tmp/a/b.npy (see /var/log/x.log)") == "checksum of b.npy (see x.log)"
    assert redact_paths("10/3 and a/b stay") == "10/3 and a/b stay"
    assert json.dumps(redact_paths("/")) == '"/"'


def test_the_learner_applies_retention_and_keeps_what_the_snapshot_needs(tmp_path):
    engine_dir = build_engine(tmp_path / "engine", store={"max_events": 6, "retention_s": 0})
    st = ServingState(ServeSettings(engine_dir=str(engine_dir), state_dir=str(tmp_path / "state"), poll_s=3600,
                                    feedback_window_s=5.0))
    st.start()
    try:
        for i in range(10):
            if i == 4:
                time.sleep(5.2)  # the first four leave the feedback window
            d = st.engine.search(["drama", "war"][i % 2])
            st.feedback(Feedback.clicks(d.event_id, [d.page_ids[0]]))
        st.snapshot()  # includes journal seq 10
        st.prune()
        assert st.engine.events.counts() == {"events": 6, "feedback": 6}
        assert [e.seq for e in st.engine.events.journal_since(0)] == [5, 6, 7, 8, 9, 10]
        assert st.metrics.pruned.value() == 4 and st.engine.events.journal_head() == 10
        # a tighter cap does not delete decisions that may still get feedback
        cfg = st.engine.config
        st.engine.config = cfg.model_copy(update={"store": cfg.store.model_copy(update={"max_events": 2})})
        st.prune()
        assert st.engine.events.counts()["events"] == 6
    finally:
        st.stop()
