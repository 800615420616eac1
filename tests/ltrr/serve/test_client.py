"""ltrr.client against a real server; the CLI's refusal to serve publicly without a token."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ltrr.client import (
    AuthError,
    BadRequestError,
    LtrrClient,
    LtrrConnectionError,
    NotFoundError,
)

from .conftest import TOKEN, Server, free_port


@pytest.fixture(scope="module")
def server(small_engine, tmp_path_factory):
    s = Server(small_engine, tmp_path_factory.mktemp("client") / "state").start()
    yield s
    s.stop()


def test_client_search_and_feedback(server):
    with LtrrClient(server.url, token=TOKEN) as c:
        assert c.health() and c.ready()
        page = c.search("crime", context={"device": "tv"}, k=4)
        assert len(page["results"]) == 4
        item = page["results"][1]["id"]
        first = c.feedback(page["event_id"], clicks=[item])
        assert first["new_events"] == 1 and first["policy_updated"] is True
        again = c.feedback(page["event_id"], clicks=[item],
                           events=[{"item": item, "kind": "dwell", "value": 42.0}])
        assert again["new_events"] == 1 and again["duplicate_events"] == 1
        assert c.status()["learner"] is True


def test_client_typed_errors(server):
    with LtrrClient(server.url, token=TOKEN) as c:
        with pytest.raises(NotFoundError, match=r"HTTP 404: Unknown event id 'nope'"):
            c.feedback("nope")
        with pytest.raises(BadRequestError, match=r"HTTP 422: Invalid request: k: Input should be less than or equal to 100"):
            c.search("drama", k=1000)
    with LtrrClient(server.url) as anon:
        page = anon.search("drama")  # searches need no token
        with pytest.raises(AuthError, match=r"HTTP 401: Missing bearer token"):
            anon.feedback(page["event_id"])
    with LtrrClient(server.url, token="wrong") as bad, pytest.raises(AuthError, match="HTTP 403: Invalid bearer token"):
        bad.feedback(page["event_id"])


def test_client_retries_then_raises_connection_error():
    port = free_port()  # nothing listens here
    with LtrrClient(f"http://127.0.0.1:{port}", retries=2, backoff_s=0.01) as c, \
            pytest.raises(LtrrConnectionError, match=r"POST /search: cannot reach .* after 3 attempt\(s\)"):
        c.search("drama")


def test_serve_refuses_public_address_without_token(small_engine):
    env = {k: v for k, v in os.environ.items() if k != "LTRR_TOKEN"}
    proc = subprocess.run([sys.executable, "-m", "ltrr.cli", "serve", "--engine", str(small_engine),
                           "--host", "0.0.0.0", "--port", str(free_port())],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert ("error: refusing to serve on non-loopback address '0.0.0.0' without a token: "
            "set $LTRR_TOKEN or pass --token-file") in proc.stderr


def test_serve_reports_a_missing_engine_directory(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ltrr.cli", "serve", "--engine", str(tmp_path / "none")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "not a saved ltrr component (no manifest.json)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_fsynced_feedback_mode_answers_the_same(tmp_path, server_factory):
    from .conftest import build_engine

    engine_dir = build_engine(tmp_path / "engine", serve={"feedback_synchronous": "FULL", "feedback_window_s": 600})
    s = server_factory(engine_dir).start()
    with LtrrClient(s.url, token=TOKEN) as c:
        page = c.search("western", k=3)
        r = c.feedback(page["event_id"], clicks=[page["results"][0]["id"]])
        assert r["new_events"] == 1 and r["applied"] is True and r["policy_updated"] is True
        assert c.feedback(page["event_id"], clicks=[page["results"][0]["id"]])["duplicate_events"] == 1
        assert c.status()["policy"]["n_updates"] == 1
