"""A small Python client for ``ltrr serve``: search, feedback, health, with retries and typed errors.

>>> from ltrr.client import LtrrClient
>>> with LtrrClient("http://127.0.0.1:8000", token="...") as c:          # doctest: +SKIP
...     page = c.search("the godfather", context={"device": "mobile"}, k=10)
...     c.feedback(page["event_id"], clicks=[page["results"][0]["id"]])
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx


class LtrrClientError(Exception):
    """An error answered by the server (``status`` and its ``detail`` message)."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"HTTP {status}: {detail}")
        self.status, self.detail = status, detail


class BadRequestError(LtrrClientError):
    """400/413/422: the request was malformed, too large or failed validation."""


class AuthError(LtrrClientError):
    """401/403: missing or wrong bearer token."""


class NotFoundError(LtrrClientError):
    """404: e.g. feedback for an event id the server never logged."""


class FeedbackExpiredError(LtrrClientError):
    """410: the late-feedback window of the event has closed."""


class ServerError(LtrrClientError):
    """5xx: the server failed (or is not ready yet, 503)."""


class LtrrConnectionError(Exception):
    """The server could not be reached after all retries."""


_ERRORS: dict[int, type[LtrrClientError]] = {400: BadRequestError, 413: BadRequestError, 422: BadRequestError,
                                             401: AuthError, 403: AuthError, 404: NotFoundError,
                                             410: FeedbackExpiredError}


class LtrrClient:
    """Client of one ltrr service.

    Parameters
    ----------
    base_url
        e.g. ``http://127.0.0.1:8000``.
    token
        Bearer token for feedback and admin calls (searches do not need it).
    retries
        Extra attempts on connection errors and 503, with exponential backoff from ``backoff_s``.
        Retrying feedback is safe: the server stores it idempotently per (event, item, kind).
    """

    def __init__(self, base_url: str, token: str | None = None, *, timeout_s: float = 10.0,
                 retries: int = 3, backoff_s: float = 0.1):
        if retries < 0:
            raise ValueError(f"retries must be >= 0; got {retries}")
        self.retries, self.backoff_s = retries, backoff_s
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s, headers=headers)

    def search(self, query: str, context: Mapping[str, Any] | None = None, k: int = 10,
               explain: bool = False) -> dict[str, Any]:
        """One search: ``{event_id, results, plan, propensities, model_versions, ...}``."""
        body: dict[str, Any] = {"query": query, "context": dict(context or {}), "k": k}
        if explain:
            body["explain"] = True
        return self._call("POST", "/search", body)

    def feedback(self, event_id: str, clicks: Sequence[str] = (), *,
                 events: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
        """Feedback for a search: ``clicks`` are item ids (kind click, value 1); ``events`` are
        full ``{item, kind, position?, value?}`` records. Neither means "shown, nothing clicked"."""
        evs = [{"item": str(i), "kind": "click"} for i in clicks] + [dict(e) for e in events]
        return self._call("POST", "/feedback", {"event_id": event_id, "events": evs})

    def health(self) -> bool:
        return self._call("GET", "/healthz").get("status") == "ok"

    def ready(self) -> bool:
        try:
            return self._call("GET", "/readyz", retry=False).get("status") == "ready"
        except (LtrrClientError, LtrrConnectionError):
            return False

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/admin/status")

    def reload(self) -> dict[str, Any]:
        return self._call("POST", "/admin/reload")

    def _call(self, method: str, path: str, body: Any = None, retry: bool = True) -> dict[str, Any]:
        attempts = 1 + (self.retries if retry else 0)
        for attempt in range(attempts):
            try:
                resp = self._http.request(method, path, json=body)
            except (httpx.ConnectError, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError,
                    httpx.ConnectTimeout) as exc:
                if attempt + 1 == attempts:
                    raise LtrrConnectionError(f"{method} {path}: cannot reach {self._http.base_url} "
                                              f"after {attempts} attempt(s): {exc}") from None
            else:
                if resp.status_code == 503 and attempt + 1 < attempts:
                    pass
                elif resp.status_code >= 400:
                    try:
                        detail = str(resp.json().get("detail", resp.text))
                    except ValueError:
                        detail = resp.text
                    raise _ERRORS.get(resp.status_code, ServerError if resp.status_code >= 500
                                      else LtrrClientError)(resp.status_code, detail)
                else:
                    return resp.json()
            time.sleep(self.backoff_s * 2 ** attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LtrrClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
