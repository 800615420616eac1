"""The service over real HTTP: search, feedback, idempotency, bad input, auth, metrics, concurrency."""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from ltrr.engine import Engine

from .conftest import Server

QUERIES = ["drama", "comedy", "crime", "war", "western", "romance", "thriller", "adventure"]


@pytest.fixture(scope="module")
def server(small_engine, tmp_path_factory):
    s = Server(small_engine, tmp_path_factory.mktemp("app") / "state", "--feedback-window", "3",
               "--snapshot-every", "0.5").start()
    yield s
    s.stop()


def search(s: Server, query: str = "godfather", **kw) -> dict:
    r = httpx.post(s.url + "/search", json={"query": query, **kw}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def status(s: Server) -> dict:
    r = httpx.get(s.url + "/admin/status", headers=s.headers, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_search_returns_ranked_results_with_provenance_plan_and_propensities(server):
    body = search(server, "crime drama", k=5, context={"device": "mobile", "hour": 21})
    assert len(body["results"]) == 5
    godfather = search(server, "godfather", k=5)["results"]
    assert godfather[0]["title"] == "The Godfather"
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    for r in body["results"]:
        assert set(r) == {"id", "title", "score", "provenance"}
        assert set(r["provenance"]) <= {"bm25", "memory"} and r["provenance"]
    depths = body["plan"]["depths"]
    assert depths["bm25"] in (10, 30)
    assert 0 < body["propensities"]["plan"] <= 1
    assert set(body["propensities"]["strategies"]) == {"bm25", "memory"}
    assert body["model_versions"]["policy"].startswith("epsilon_greedy@")
    assert {"features", "policy", "strategy:bm25", "union", "ranker", "logging"} <= set(body["timings_ms"])


def test_explain_adds_contributions_or_says_why_not(server):
    body = search(server, "adventure", k=3, explain=True)
    if hasattr(Engine, "explain"):
        assert isinstance(body["explanation"], list) and len(body["explanation"]) == len(body["results"])
    else:
        assert body["explain_note"] == "explanations are not available in this build; provenance only"


def test_feedback_is_idempotent_and_updates_policy_and_memory_once(server):
    before = status(server)
    page = search(server, "western")
    item = page["results"][0]["id"]
    fb = {"event_id": page["event_id"], "events": [{"item": item, "position": 0, "kind": "click"}]}
    first = httpx.post(server.url + "/feedback", json=fb, headers=server.headers, timeout=10).json()
    assert first == {**first, "new_events": 1, "duplicate_events": 0, "applied": True, "policy_updated": True}
    again = httpx.post(server.url + "/feedback", json=fb, headers=server.headers, timeout=10).json()
    assert again["new_events"] == 0 and again["duplicate_events"] == 1 and again["policy_updated"] is False
    after = status(server)
    assert after["policy"]["n_updates"] == before["policy"]["n_updates"] + 1
    assert after["event_log"]["feedback"] == before["event_log"]["feedback"] + 1
    assert after["journal_head"] == before["journal_head"] + 1
    # the click memory now retrieves the clicked film for this query
    for _ in range(20):
        res = search(server, "western")
        if res["plan"]["depths"]["memory"] > 0:
            assert "memory" in next(r for r in res["results"] if r["id"] == item)["provenance"]
            break


def test_empty_feedback_closes_the_event_for_the_policy(server):
    before = status(server)["policy"]["n_updates"]
    page = search(server, "comedy")
    r = httpx.post(server.url + "/feedback", json={"event_id": page["event_id"], "events": []},
                   headers=server.headers, timeout=10).json()
    assert r["policy_updated"] is True and r["new_events"] == 0
    assert r["reward"] == pytest.approx(-0.0005 * sum(page["plan"]["depths"].values()))
    assert status(server)["policy"]["n_updates"] == before + 1


def test_late_feedback_is_rejected_after_the_window(server):
    page = search(server, "war")
    time.sleep(3.3)
    r = httpx.post(server.url + "/feedback", json={"event_id": page["event_id"], "events": []},
                   headers=server.headers, timeout=10)
    assert r.status_code == 410
    assert re.fullmatch(r"Feedback for event '.+' is too late: the decision was logged \d+ s ago and "
                        r"the late-feedback window is 3 s", r.json()["detail"])


def test_bad_input_gets_clear_4xx_and_nothing_is_written(server):
    page = search(server, "casablanca")
    eid = page["event_id"]
    before = status(server)
    url, h = server.url, {**server.headers, "Content-Type": "application/json"}
    cases = [
        ("malformed json", "/search", b'{"query": ', h, 400, r"Malformed JSON body: .+"),
        ("wrong type", "/search", b'{"query": "x", "k": "many"}', h, 422, r"Invalid request: k: Input should be a valid integer.*"),
        ("query type", "/search", b'{"query": 42}', h, 422, r"Invalid request: query: Input should be a valid string"),
        ("k range", "/search", b'{"query": "x", "k": 0}', h, 422, r"Invalid request: k: Input should be greater than or equal to 1"),
        ("unknown field", "/search", b'{"query": "x", "kk": 3}', h, 422, r"Invalid request: kk: Extra inputs are not permitted"),
        ("10 MB body", "/search", b'{"query": "' + b"a" * 10_000_000 + b'"}', h, 413,
         r"Request body too large: the limit is 1048576 bytes"),
        ("unknown event", "/feedback", b'{"event_id": "no-such-event", "events": []}', h, 404,
         r"Unknown event id 'no-such-event': no decision with this id is in the event log"),
        ("item not shown", "/feedback",
         json.dumps({"event_id": eid, "events": [{"item": "tt9999999"}]}).encode(), h, 422,
         r"Item 'tt9999999' was not shown in event '.+'"),
        ("bad kind", "/feedback",
         json.dumps({"event_id": eid, "events": [{"item": "x", "kind": "like"}]}).encode(), h, 422,
         r"Invalid request: events\.0\.kind: Input should be 'click', 'purchase' or 'dwell'"),
        ("missing token", "/feedback", json.dumps({"event_id": eid}).encode(),
         {"Content-Type": "application/json"}, 401, r"Missing bearer token: send 'Authorization: Bearer <token>'"),
        ("wrong token", "/feedback", json.dumps({"event_id": eid}).encode(),
         {"Content-Type": "application/json", "Authorization": "Bearer wrong"}, 403, r"Invalid bearer token"),
        ("admin without token", "/admin/reload", b"", {}, 401, r"Missing bearer token.*"),
    ]
    for name, path, body, headers, code, message in cases:
        r = httpx.post(url + path, content=body, headers=headers, timeout=30)
        assert r.status_code == code, (name, r.status_code, r.text)
        detail = r.json()["detail"]
        assert re.fullmatch(message, detail), (name, detail)
        assert "Traceback" not in r.text and "/work" not in r.text and ".py" not in r.text, name
    after = status(server)
    assert after["event_log"]["feedback"] == before["event_log"]["feedback"]
    assert after["journal_head"] == before["journal_head"]
    assert after["policy"]["n_updates"] == before["policy"]["n_updates"]
    assert after["event_log"]["events"] == before["event_log"]["events"]  # no bad search was logged
    assert search(server, "drama")["results"]  # still serving
    assert httpx.get(url + "/readyz", timeout=5).status_code == 200


def test_concurrent_searches_and_feedback_count_exactly_once(server):
    before = status(server)

    def one(i: int) -> str:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            page = c.post("/search", json={"query": QUERIES[i % len(QUERIES)]}).json()
            fb = {"event_id": page["event_id"], "events": [{"item": page["results"][i % 3]["id"]}]}
            for _ in range(2):  # duplicates must not count
                r = c.post("/feedback", json=fb, headers=server.headers)
                assert r.status_code == 200, r.text
            return page["event_id"]

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(one, range(64)))
    assert len(set(ids)) == 64
    deadline = time.monotonic() + 20  # feedback that met a busy learner is applied by its thread
    while (after := status(server))["applied_seq"] != after["journal_head"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert after["policy"]["n_updates"] == before["policy"]["n_updates"] + 64
    assert after["event_log"]["feedback"] == before["event_log"]["feedback"] + 64
    assert after["applied_seq"] == after["journal_head"] == before["journal_head"] + 64


def test_metrics_exposes_requests_latency_plans_and_feedback(server):
    search(server, "thriller")
    text = httpx.get(server.url + "/metrics", timeout=10).text
    line = re.search(r'^ltrr_http_requests_total\{endpoint="/search",method="POST",status="200",pid="\d+"\} (\S+)$',
                     text, re.M)
    assert line and float(line.group(1)) >= 1
    count = re.search(r'^ltrr_http_request_duration_seconds_count\{endpoint="/search",pid="\d+"\} (\S+)$', text, re.M)
    inf = re.search(r'^ltrr_http_request_duration_seconds_bucket\{endpoint="/search",pid="\d+",le="\+Inf"\} (\S+)$',
                    text, re.M)
    assert count and inf and count.group(1) == inf.group(1)
    assert re.search(r'^ltrr_plans_total\{plan="bm25=(10|30),memory=(0|10)",pid="\d+"\} \S+$', text, re.M)
    assert re.search(r'^ltrr_strategy_selected_total\{strategy="bm25",pid="\d+"\} \S+$', text, re.M)
    assert re.search(r'^ltrr_search_stage_seconds_count\{stage="ranker",pid="\d+"\} \S+$', text, re.M)
    assert "# TYPE ltrr_feedback_lag_seconds histogram" in text
    assert re.search(r"^ltrr_learner\{pid=\"\d+\"\} 1\.0$", text, re.M)
    assert "# TYPE ltrr_policy_updates_total counter" in text


def test_health_and_openapi_docs(server):
    assert httpx.get(server.url + "/healthz", timeout=5).json() == {"status": "ok"}
    spec = httpx.get(server.url + "/openapi.json", timeout=5).json()
    assert {"/search", "/feedback", "/healthz", "/readyz", "/metrics", "/admin/reload"} <= set(spec["paths"])
    assert httpx.get(server.url + "/docs", timeout=5).status_code == 200


def test_streamed_body_over_the_limit_is_refused(server):
    def chunks():
        for _ in range(12):
            yield b"a" * 100_000

    r = httpx.post(server.url + "/search", content=chunks(), headers={"Content-Type": "application/json"},
                   timeout=30)
    assert r.status_code == 413
    assert r.json()["detail"] == "Request body too large: the limit is 1048576 bytes"
    assert search(server, "drama")["results"]


def test_validation_messages_name_the_field_once(server):
    cases = [
        (b'{"query": "a", "context": {"x": NaN}}', r"Invalid request: context\.x: none of the accepted types matched "
                                                   r"\(Input should be a valid string; .*finite number.*\)"),
        (b'[1, 2]', r"Invalid request: the body must be a JSON object \(Content-Type: application/json\)"),
        (b'{"k": 3}', r"Invalid request: query: Field required"),
    ]
    for body, message in cases:
        r = httpx.post(server.url + "/search", content=body, headers={"Content-Type": "application/json"}, timeout=10)
        assert r.status_code == 422 and re.fullmatch(message, r.json()["detail"]), r.text
