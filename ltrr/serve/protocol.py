"""uvicorn's httptools protocol with read deadlines: a client must send its request headers
within ``header_timeout_s`` of connecting (or of its previous response) and the body within
``body_timeout_s`` of the headers, or the connection is closed.

uvicorn only times out idle keep-alive connections *after* a response; a connection that sends
nothing, or a header line every few seconds (slow loris), or a body one byte at a time, is held
forever and counts against ``limit_concurrency``. The deadlines come from the serving settings
(``$LTRR_SERVE_SETTINGS``, set by ``ltrr serve``), read once per worker process.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("ltrr.serve")

DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_BODY_TIMEOUT_S = 30.0


@functools.cache
def read_deadlines() -> tuple[float, float]:
    """(header, body) read timeouts in seconds for this process."""
    raw = os.environ.get("LTRR_SERVE_SETTINGS")
    settings: dict[str, Any] = json.loads(raw) if raw else {}
    return (float(settings.get("header_timeout_s") or DEFAULT_HEADER_TIMEOUT_S),
            float(settings.get("body_timeout_s") or DEFAULT_BODY_TIMEOUT_S))


class ReadTimeoutHttpToolsProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` that closes connections too slow to send a request."""

    _deadline: asyncio.TimerHandle | None = None

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expire, what)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self, what: str) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            log.info("closing a connection from %s: no complete request %s in time", self.client, what)
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(read_deadlines()[0], "headers")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm(read_deadlines()[0], "headers")

    def on_headers_complete(self) -> None:
        self._arm(read_deadlines()[1], "body")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
