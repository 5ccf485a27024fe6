"""Request limits of the feed API: a body-size cap enforced before the body is read, and 422s that
are always valid JSON.

:class:`BodySizeLimit` is plain ASGI, outside FastAPI: a declared ``Content-Length`` over the limit is
refused before a byte of the body is read (a client sending ``Expect: 100-continue`` never sends it);
a chunked body is held at most up to the limit, then replayed to the app. The refused rest is read and
dropped, bounded (DRAIN_MAX_BYTES, DRAIN_MAX_S), before the 413 ends: a server that closes while a
client is still sending makes the client's TCP reset the connection, and many clients (Python's
urllib among them) then report "broken pipe" instead of the 413.

:func:`validation_error` replaces FastAPI's 422 handler, which echoes the offending input: a NaN or
Infinity parsed from the body (Python's JSON parser accepts both literals) made that response itself
fail with a 500. Here non-finite numbers become strings, long inputs are cut and errors are capped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_ERRORS = 20  # errors listed in one 422
MAX_INPUT_CHARS = 200  # an offending input longer than this (as JSON) is cut
DRAIN_MAX_BYTES = 16 * 1024 * 1024  # a refused body longer than this is not drained: close at once
DRAIN_MAX_S = 5.0


class BodySizeLimit:
    """413 for a request body over ``max_bytes``; ``on_refuse(reason)`` counts refusals."""

    def __init__(self, app: ASGIApp, max_bytes: int, setting: str,
                 on_refuse: Callable[[str], None] = lambda reason: None) -> None:
        self.app, self.max_bytes, self.setting, self.on_refuse = app, max_bytes, setting, on_refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None:
            size = int(declared) if declared.isdigit() else -1
            if size < 0:
                await _answer(send, 400, f"Content-Length {declared.decode(errors='replace')!r} is not a "
                                         "byte count")
                return
            if size > self.max_bytes:
                waits = headers.get(b"expect", b"").lower() == b"100-continue"  # will not send unasked
                drain = 0 if waits or size > DRAIN_MAX_BYTES else size
                await self._refuse(send, receive, f"{size} bytes", drain)
                return
        elif b"transfer-encoding" in headers:  # chunked: no size up front, count what arrives
            replay = await self._read_capped(receive)
            if replay is None:
                await self._refuse(send, receive, "more bytes", DRAIN_MAX_BYTES)
                return
            receive = replay
        await self.app(scope, receive, send)

    async def _read_capped(self, receive: Receive) -> Receive | None:
        """The whole body if it fits (as a replaying ``receive``), else None (read no further)."""
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the app see it
                return _replay(message, receive)
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return None
            more = bool(message.get("more_body", False))
        return _replay({"type": "http.request", "body": b"".join(chunks), "more_body": False}, receive)

    async def _refuse(self, send: Send, receive: Receive, got: str, drain_bytes: int) -> None:
        self.on_refuse("body_too_large")
        await _answer(send, 413, f"request body is larger than the limit: {got} sent, at most "
                                 f"{self.max_bytes} bytes allowed (setting {self.setting})",
                      drain=lambda: _drain(receive, drain_bytes))


async def _drain(receive: Receive, max_bytes: int) -> None:
    """Read and drop up to ``max_bytes`` of the body still coming, for at most DRAIN_MAX_S."""

    async def drop() -> None:
        left = max_bytes
        while left > 0:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return
            left -= len(message.get("body", b""))

    if max_bytes > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(drop(), DRAIN_MAX_S)


def _replay(first: Message, receive: Receive) -> Receive:
    """``first``, then whatever ``receive`` brings (e.g. the disconnect a streaming response awaits)."""
    pending = [first]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


async def _answer(send: Send, status: int, detail: str,
                  drain: Callable[[], Awaitable[None]] | None = None) -> None:
    """A JSON error, and close the connection: the unread rest of the body makes it unusable."""
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    if drain is not None:
        await drain()
    await send({"type": "http.response.body", "body": body})


def validation_handler(on_refuse: Callable[[str], None]
                       ) -> Callable[[Request, Exception], Any]:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        on_refuse("invalid")
        return validation_error(exc)

    return handle


def validation_error(exc: Exception) -> JSONResponse:
    """422 listing (at most MAX_ERRORS of) the errors, each JSON-safe."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    body: dict[str, Any] = {"detail": [_safe_error(e) for e in errors[:MAX_ERRORS]]}
    if len(errors) > MAX_ERRORS:
        body["more_errors"] = len(errors) - MAX_ERRORS
    return JSONResponse(body, status_code=422)


def _safe_error(error: Any) -> Any:
    safe = _finite(jsonable_encoder(error))
    if isinstance(safe, dict) and "input" in safe:
        text = json.dumps(safe["input"])
        if len(text) > MAX_INPUT_CHARS:
            safe["input"] = text[:MAX_INPUT_CHARS] + "... (cut)"
    return safe


def _finite(value: Any) -> Any:
    """``value`` with every NaN/Infinity replaced by its JSON-literal spelling as a string."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
