"""The FastAPI application: search, feedback, health, metrics and admin endpoints.

A thin layer over :class:`ltrr.serve.state.ServingState` (which wraps the Engine). Errors are
answered as ``{"detail": message}`` with no stack trace or file path; request bodies are capped;
write and admin endpoints require ``Authorization: Bearer <token>`` when a token is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
)
from pydantic_core import PydanticCustomError
from starlette.concurrency import run_in_threadpool

from ltrr.config import REPO_ROOT, ServeConfig
from ltrr.engine import decision_to_json
from ltrr.errors import (
    DataError,
    FeedbackExpiredError,
    IncompatibleEventError,
    LtrrError,
    PersistenceError,
    UnknownEventError,
)
from ltrr.serve.state import (
    EngineNotReadyError,
    EngineUnavailableError,
    ServeSettings,
    ServingState,
)
from ltrr.types import Feedback, FeedbackEvent

log = logging.getLogger("ltrr.serve")

SETTINGS_ENV = "LTRR_SERVE_SETTINGS"
TOKEN_ENV = "LTRR_TOKEN"
#: how long a feedback answer waits for a busy learner to apply it (then ``applied: false``)
APPLY_WAIT_S = 2.0
#: a body over the limit is read and discarded up to this size so the client gets the 413
DRAIN_LIMIT = 64 * 1024 * 1024

#: bounds on what a search may carry (each decision is stored; an unbounded context once let 40
#: anonymous calls grow the event log by 39 MB)
MAX_QUERY_CHARS = 1000
MAX_CONTEXT_KEYS = 32
MAX_CONTEXT_KEY_CHARS = 64
MAX_CONTEXT_VALUE_CHARS = 256
#: at least one character that is not whitespace, spelled out so that the schema's pattern (an
#: ECMAScript regex) and the server's check agree on every character (Python's \s also matches
#: the control characters U+001C-U+001F; ECMAScript's does not)
NOT_BLANK = "[^\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"

def _json_number(kind: str) -> BeforeValidator:
    """JSON numbers only: a string or a boolean is not a number (pydantic's lax mode would
    convert "10" and true); an integral float stays acceptable for an integer, as JSON Schema says."""

    def check(value: Any) -> Any:
        if isinstance(value, str | bool):
            raise PydanticCustomError("json_number", f"Input should be a valid {kind} (a JSON number, not a "
                                                     f"{type(value).__name__})")
        return value
    return BeforeValidator(check)


def _not_blank(value: str) -> str:
    if _NOT_BLANK.search(value) is None:
        raise PydanticCustomError("blank", "Input should contain a character that is not whitespace")
    return value


_NOT_BLANK = re.compile(NOT_BLANK)
#: a string with at least one character that is not whitespace (the schema says so with a pattern)
NonBlank = Annotated[str, AfterValidator(_not_blank), Field(json_schema_extra={"pattern": NOT_BLANK})]
JsonInt = Annotated[int, _json_number("integer")]
JsonFloat = Annotated[float, _json_number("number")]
ContextKey = Annotated[str, StringConstraints(min_length=1, max_length=MAX_CONTEXT_KEY_CHARS)]
# strict: a 300-digit string must not pass as an int because it is too long for a string
ContextValue = (Annotated[str, StringConstraints(max_length=MAX_CONTEXT_VALUE_CHARS)] | StrictInt | StrictFloat
                | StrictBool | None)


# ---------------------------------------------------------------------- request/response models
class SearchRequest(BaseModel):
    """One search."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    query: NonBlank = Field(..., min_length=1, max_length=MAX_QUERY_CHARS,
                       description="The query text (not only whitespace).")
    context: dict[ContextKey, ContextValue] = Field(
        default_factory=dict, max_length=MAX_CONTEXT_KEYS,
        description=f"User/session fields: at most {MAX_CONTEXT_KEYS} keys of at most {MAX_CONTEXT_KEY_CHARS} "
                    f"characters, flat JSON values (strings of at most {MAX_CONTEXT_VALUE_CHARS} characters).")
    k: JsonInt = Field(10, ge=1, le=100, description="Results to return.")
    explain: StrictBool = Field(False, description="Add per-result feature contributions.")


class Result(BaseModel):
    id: str
    title: str
    score: float
    provenance: dict[str, dict[str, float]]


class SearchResponse(BaseModel):
    event_id: str
    query: str
    results: list[Result]
    plan: dict[str, Any]
    propensities: dict[str, Any]
    model_versions: dict[str, str]
    n_candidates: int
    timings_ms: dict[str, float]
    explanation: list[dict[str, Any]] | None = None
    explain_note: str | None = None


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    item: NonBlank = Field(..., min_length=1, max_length=256, description="Id of a shown item.")
    position: JsonInt | None = Field(None, ge=0, le=10_000, description="0-based display position.")
    kind: Literal["click", "purchase", "dwell"] = "click"
    value: JsonFloat | None = Field(None, ge=0.0, le=1e6,
                                description="Graded reward (default 1); > 0 counts as a positive.")


class FeedbackRequest(BaseModel):
    """Feedback for one search. An empty ``events`` list means "shown, nothing clicked"."""

    model_config = ConfigDict(extra="forbid")

    event_id: NonBlank = Field(..., min_length=1, max_length=64)
    events: list[FeedbackItem] = Field(default_factory=list, max_length=1000)


class FeedbackResponse(BaseModel):
    event_id: str
    new_events: int
    duplicate_events: int
    journal_seq: int | None
    applied: bool
    policy_updated: bool
    reward: float | None = None


class ErrorBody(BaseModel):
    """Every error: a message naming the offending field or value (no stack trace, no path)."""

    detail: str


class FieldError(BaseModel):
    field: str
    message: str


class ValidationErrorBody(BaseModel):
    """422: the message, and one entry per invalid field."""

    detail: str
    errors: list[FieldError] | None = None


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    engine: str
    learner: bool
    pid: int


class Starting(BaseModel):
    status: Literal["starting"]
    detail: str


class ReloadResponse(BaseModel):
    reloaded: bool
    fingerprint: str
    detail: str | None = None


_ERR: dict[str, Any] = {"model": ErrorBody}
_TEXT_503: dict[str, Any] = {"model": ErrorBody, "description": "Not ready (engine loading), the event log unavailable, or "
             "over the connection limit (then plain text `Service Unavailable`).",
             "content": {"text/plain": {"schema": {"type": "string"}}}}
_R_BODY: dict[int | str, dict[str, Any]] = {400: {**_ERR, "description": "Malformed JSON body."},
           413: {**_ERR, "description": "Request body over the limit."},
           422: {"model": ValidationErrorBody, "description": "Invalid request (the message names each field)."},
           500: {**_ERR, "description": "Internal error; the id refers to the server log."},
           503: _TEXT_503}
_R_AUTH: dict[int | str, dict[str, Any]] = {401: {**_ERR, "description": "Missing bearer token."},
           403: {**_ERR, "description": "Wrong bearer token."}}


# ---------------------------------------------------------------------- body size limit
class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413 (declared length or streamed count)."""

    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            drained = 0
            while drained <= DRAIN_LIMIT:
                msg = await receive()
                if msg["type"] != "http.request":
                    break
                drained += len(msg.get("body", b""))
                if not msg.get("more_body"):
                    break
            await JSONResponse({"detail": self._message()}, status_code=413,
                               headers={"Connection": "close"})(scope, receive, send)
            return
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(status_code=413, detail=self._message())
            return msg

        await self.app(scope, limited, send)

    def _message(self) -> str:
        return f"Request body too large: the limit is {self.max_bytes} bytes"


class MetricsMiddleware:
    """Count requests and time them per route (pure ASGI: no per-request task or stream)."""

    def __init__(self, app: Any, metrics: Any):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]

        async def send_status(msg: dict) -> None:
            if msg["type"] == "http.response.start":
                status[0] = msg["status"]
            await send(msg)

        try:
            await self.app(scope, receive, send_status)
        finally:
            # the router stores the matched route in the (shared) scope
            endpoint = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.inc(endpoint, scope.get("method", ""), str(status[0]))
            self.metrics.latency.observe(time.perf_counter() - t0, endpoint)


# ---------------------------------------------------------------------- errors
_UNION_TAGS = {"str", "int", "float", "bool", "none", "constrained-str"}


def _field(loc: tuple | list) -> str:
    parts = [str(p) for p in loc]
    while len(parts) > 2 and parts[-1] in _UNION_TAGS:  # a union branch, not a field
        parts.pop()
    return ".".join(parts[1:] if parts and parts[0] == "body" and len(parts) > 1 else parts)


def _merge(fields: list[dict[str, str]]) -> list[dict[str, str]]:
    """One entry per field: the failed branches of a union (str | int | ...) become one message."""
    merged: dict[str, list[str]] = {}
    for f in fields:
        msgs = merged.setdefault(f["field"], [])
        if f["message"] not in msgs:
            msgs.append(f["message"])
    return [{"field": k, "message": v[0] if len(v) == 1 else "none of the accepted types matched ("
             + "; ".join(v) + ")"} for k, v in merged.items()]


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # registered for this exception type only
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        ctx = next(e for e in errors if e.get("type") == "json_invalid").get("ctx", {})
        return JSONResponse({"detail": f"Malformed JSON body: {ctx.get('error', 'cannot be parsed')}"},
                            status_code=400)
    fields = _merge([{"field": redact_paths(_field(e.get("loc", ()))), "message": e.get("msg", "invalid")}
                     for e in errors])
    if any(f["field"] == "body" for f in fields):
        return JSONResponse({"detail": "Invalid request: the body must be a JSON object "
                                       "(Content-Type: application/json)", "errors": fields}, status_code=422)
    msg = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
    return JSONResponse({"detail": f"Invalid request: {msg}", "errors": fields}, status_code=422)


_ABS_PATH = re.compile(r"(?<![\w.~-])/(?:[^\s'\"():,;/]+/)*([^\s'\"():,;/]*)")


def redact_paths(message: str) -> str:
    """``message`` with every absolute path cut to its last component (error bodies never show
    where files live: the server log has the full text)."""
    for root in sorted({str(REPO_ROOT), os.getcwd()}, key=len, reverse=True):
        message = message.replace(root + os.sep, "")
    return _ABS_PATH.sub(lambda m: m.group(1) or "/", message)


def _error(status: int, retry_after: int | None = None):
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": redact_paths(str(exc))}, status_code=status, headers=headers)
    return handler


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    error_id = uuid.uuid4().hex[:12]
    log.error("internal error %s on %s %s", error_id, request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": f"Internal error (id {error_id}); the server log has the details"},
                        status_code=500)


def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    error_id = uuid.uuid4().hex[:12]
    log.error("event log unavailable (%s) on %s %s: %s", error_id, request.method, request.url.path, exc)
    return JSONResponse({"detail": f"The event log is unavailable (id {error_id}); retry shortly"},
                        status_code=503, headers={"Retry-After": "1"})


def _store_errors() -> list[type[Exception]]:
    """Exceptions that mean the event log cannot be reached right now (answered 503)."""
    import sqlite3

    out: list[type[Exception]] = [sqlite3.OperationalError]
    try:
        import psycopg
        import psycopg_pool
    except ImportError:
        return out
    return out + [psycopg.OperationalError, psycopg_pool.PoolTimeout]


# ---------------------------------------------------------------------- app
def _read_token(settings: ServeSettings) -> str | None:
    if settings.token_file:
        with open(settings.token_file, encoding="utf-8") as fh:
            token = fh.read().strip()
        if not token:
            raise ValueError(f"token file {settings.token_file} is empty")
        return token
    env = os.environ.get(TOKEN_ENV)
    if env is not None and not env.strip():
        raise ValueError(f"${TOKEN_ENV} is set but blank")
    return env.strip() if env else None


def _engine_serve_config(engine_dir: str) -> ServeConfig:
    """The ``serve`` section of a saved engine's config (defaults when it has none)."""
    from ltrr.store.persist import MANIFEST

    try:
        manifest = json.loads((Path(engine_dir) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return ServeConfig()
    return ServeConfig.model_validate((manifest.get("config") or {}).get("serve") or {})


def _jsonable(obj: Any) -> Any:
    """Numpy scalars/arrays and non-finite floats made JSON-safe (explanations)."""
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def create_app(settings: ServeSettings, token: str | None = None) -> MetricsMiddleware:
    """Build the service for one worker process: the FastAPI app behind the metrics and
    body-limit ASGI middlewares (``.app.app`` is the FastAPI object). The engine loads in the
    background: the process answers ``/healthz`` at once and ``/readyz`` 503 until it is ready."""
    state = ServingState(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.start_background()
        try:
            yield
        finally:
            await run_in_threadpool(state.stop)

    app = FastAPI(title="ltrr", version="1",
                  description="Learning to rank and retrieve: bandit-chosen candidate generators, "
                              "LambdaMART reranking, click feedback. See docs/serving.md.",
                  lifespan=lifespan)
    app.state.serving = state
    bearer = HTTPBearer(auto_error=False)

    async def require_token(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        if token is None:
            return
        if creds is None or creds.scheme.lower() != "bearer":
            raise HTTPException(401, "Missing bearer token: send 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(creds.credentials.encode(), token.encode()):
            raise HTTPException(403, "Invalid bearer token")

    auth = [Depends(require_token)]
    max_body = settings.max_body_bytes or _engine_serve_config(settings.engine_dir).max_body_bytes

    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(UnknownEventError, _error(404))
    app.add_exception_handler(FeedbackExpiredError, _error(410))
    app.add_exception_handler(IncompatibleEventError, _error(409))
    app.add_exception_handler(DataError, _error(422))
    app.add_exception_handler(EngineNotReadyError, _error(503, retry_after=1))
    app.add_exception_handler(EngineUnavailableError, _error(503, retry_after=5))
    app.add_exception_handler(PersistenceError, _error(503, retry_after=5))
    app.add_exception_handler(LtrrError, _error(400))
    for exc_type in _store_errors():
        app.add_exception_handler(exc_type, _store_unavailable)
    app.add_exception_handler(Exception, _internal_error)

    # the link lets clients and API testers chain a search to feedback on it (stateful testing)
    search_links = {"FeedbackOnThisSearch": {
        "operationId": "feedback", "description": "Feedback for the search: its event_id, nothing clicked.",
        "requestBody": {"event_id": "$response.body#/event_id", "events": []}}}

    @app.post("/search", response_model=SearchResponse, response_model_exclude_none=True,
              responses={**_R_BODY, 200: {"links": search_links}}, operation_id="search",
              summary="Answer a query; the decision is logged under the returned event_id.")
    async def search(req: SearchRequest) -> dict[str, Any]:
        if state.backend == "postgres":
            # the decision's INSERT is a round trip to the database (~1 ms idle, ~8 ms measured on
            # a loaded machine): in the thread pool, other requests run while it waits
            return await run_in_threadpool(answer_search, req)
        # SQLite: on the event loop thread; a search is ~1 ms of CPU-bound numpy/SQLite work, and
        # a thread-pool hop per request costs more than it saves under the GIL
        return answer_search(req)

    def answer_search(req: SearchRequest) -> dict[str, Any]:
        engine = state.engine
        d = engine.search(req.query, req.context, k=req.k)
        out = decision_to_json(d, engine.catalog)
        out["propensities"] = {"plan": d.plan.propensity,
                               "strategies": dict(zip(d.plan.strategies, d.plan.strategy_propensities, strict=True))}
        m = state.metrics
        for stage, ms in d.timings_ms.items():
            m.stages.observe(ms / 1e3, stage)
        m.plans.inc(",".join(f"{s}={k}" for s, k in zip(d.plan.strategies, d.plan.depths, strict=True)))
        for s, k in zip(d.plan.strategies, d.plan.depths, strict=True):
            if k > 0:
                m.strategies.inc(s)
        if req.explain:
            out["explanation"] = _jsonable(engine.explain(d, top=req.k))
        return out

    @app.post("/feedback", response_model=FeedbackResponse, dependencies=auth, operation_id="feedback",
              responses={**_R_BODY, **_R_AUTH,
                         404: {**_ERR, "description": "Unknown event id."},
                         409: {**_ERR, "description": "The event was decided by another engine (e.g. before a "
                                                      "reload): its feedback cannot be learned from."},
                         410: {**_ERR, "description": "The late-feedback window of the event closed."},
                         422: {"model": ValidationErrorBody,
                               "description": "Invalid request, or an item that was not shown in the event."}},
              summary="Clicks/purchases/dwell for a search; idempotent per (event, item, kind).",
              description="Send an empty `events` list for 'shown, nothing clicked': it closes the "
                          "event for the policy. Feedback is committed to the event log before "
                          "the response; it is rejected (410) once the late-feedback window closed, "
                          "and (409) when the current engine cannot learn from the event.")
    async def feedback(req: FeedbackRequest) -> dict[str, Any]:
        fb = Feedback(req.event_id, tuple(
            FeedbackEvent(e.item, e.kind, e.position, 1.0 if e.value is None else e.value) for e in req.events))
        if state.engine.config.serve.feedback_synchronous == "FULL" or state.backend == "postgres":
            # an fsync, or a round trip to the database's commit, must not stall the event loop
            out = await run_in_threadpool(state.feedback, fb)
        else:
            out = state.feedback(fb)  # ~1 ms of CPU: inline, no thread hop (GIL convoys under load)
        if out["journal_seq"] is not None and not out["applied"] and state.is_learner:
            # the learner was busy (snapshot, retrain): wait for its thread without blocking the loop
            deadline = time.monotonic() + APPLY_WAIT_S
            while state.applied_seq < out["journal_seq"] and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            state.describe_applied(out)
        return out

    @app.get("/healthz", response_model=Health, summary="Liveness: the process answers (also while loading).")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", response_model=Ready,
             responses={503: {"model": Starting, "description": "The engine is loading or the journal replaying."}},
             summary="Readiness: engine loaded and journal replayed.")
    def readyz() -> JSONResponse:
        if not state.ready or not state.loaded:
            detail = "the engine is loading" if state.start_error is None else \
                f"the engine could not be started, retrying: {redact_paths(state.start_error)}"
            return JSONResponse({"status": "starting", "detail": detail}, status_code=503,
                                headers={"Retry-After": "1"})
        return JSONResponse({"status": "ready", "engine": state.fingerprint, "learner": state.is_learner,
                             "pid": os.getpid()})

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics of this worker.",
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.post("/admin/reload", dependencies=auth, response_model=ReloadResponse, response_model_exclude_none=True,
              responses={**_R_AUTH, 413: _R_BODY[413], 500: _R_BODY[500],
                         503: {**_TEXT_503, "description": "Not ready, the engine directory missing or invalid "
                                                           "(the old engine keeps serving), or the learner did "
                                                           "not publish the reload in time."}},
              summary="Swap in the engine directory as saved now, without dropping requests.")
    def reload() -> dict[str, Any]:
        try:
            return state.reload()
        except TimeoutError as exc:
            raise EngineUnavailableError(str(exc)) from None
        except (OSError, ValueError) as exc:  # the directory changed or broke under the load
            log.warning("reload failed: %s", exc)
            raise EngineUnavailableError(
                f"The engine directory could not be loaded ({type(exc).__name__}); still serving engine "
                f"{state.fingerprint}") from None

    @app.get("/admin/status", dependencies=auth, responses={**_R_AUTH, 500: _R_BODY[500], 503: _TEXT_503},
             summary="Learner role, journal position, policy and log counts.")
    def status() -> dict[str, Any]:
        return state.status()

    return MetricsMiddleware(BodyLimitMiddleware(app, max_body), state.metrics)


def app_from_env() -> Any:
    """uvicorn factory for worker processes: settings come as JSON in ``LTRR_SERVE_SETTINGS``."""
    raw = os.environ.get(SETTINGS_ENV)
    if not raw:
        raise RuntimeError(f"{SETTINGS_ENV} is not set; start the service with `ltrr serve`")
    settings = ServeSettings.model_validate(json.loads(raw))
    return create_app(settings, _read_token(settings))
