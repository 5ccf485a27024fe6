"""Admission control of the feed route: a bounded number of feed requests in flight per process, and a
deadline for starting one; beyond either the request is answered at once, never queued.

:class:`Admission` is plain ASGI in front of FastAPI (so a refusal costs no routing, validation or
dependency work): a ``GET /v1/feed/...`` that finds ``api.max_in_flight`` requests already admitted,
or so many that it would not start within ``api.queue_timeout_ms`` at the recent time per feed, is
shed on arrival. An admitted one records its arrival (``scope["state"]["admitted_at"]``); the
handler's worker thread sheds it instead of computing when it starts later than
``api.queue_timeout_ms`` after that (:func:`check_start`). A shed request gets, per ``api.overload``,
a 503 with ``Retry-After`` or a degraded feed (the user's last feed or the popularity snapshot,
built without touching a store).

Example:
    >>> gate = Admission(app, limit=16, shed=lambda scope, reason: (503, [], b"{}"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

FEED_PREFIX = "/v1/feed/"
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
Shed = Callable[[Scope, str], Answer]


class Overloaded(Exception):
    """A feed request shed after admission (it waited too long to start)."""

    def __init__(self, reason: str, waited_s: float) -> None:
        super().__init__(f"{reason}: waited {waited_s * 1e3:.0f} ms to start")
        self.reason = reason


class Admission:
    """Counts feed requests in flight; sheds the ones beyond ``limit`` before the app sees them, and
    (with ``wait_s``) the ones that would wait longer than ``timeout_s`` to start: ``wait_s(n)`` is
    the expected wait of a request arriving with ``n`` in flight (``FeedService.expected_wait_s``).
    Such a request would be shed by its feed thread anyway (``check_start``), after routing, its
    dependencies and a thread hop; refused here it costs a fraction of that and is answered at once."""

    def __init__(self, app: ASGIApp, limit: int, shed: Shed,
                 on_shed: Callable[[str], None] = lambda reason: None,
                 wait_s: Callable[[int], float] | None = None, timeout_s: float = float("inf")) -> None:
        self.app, self.limit, self.shed, self.on_shed = app, limit, shed, on_shed
        self.wait_s, self.timeout_s = wait_s, timeout_s
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(FEED_PREFIX):
            await self.app(scope, receive, send)
            return
        reason = self.refusal()
        if reason:
            self.on_shed(reason)
            await answer(send, *self.shed(scope, reason))
            return
        scope.setdefault("state", {})["admitted_at"] = time.monotonic()
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    def refusal(self) -> str:
        """Why a feed request arriving now is shed ("": it is admitted)."""
        if self.in_flight >= self.limit:
            return "in_flight"
        if self.wait_s is not None and self.wait_s(self.in_flight) > self.timeout_s:
            return "expected_wait"
        return ""


def check_start(admitted_at: float | None, timeout_s: float) -> None:
    """Raise :class:`Overloaded` when a request starts more than ``timeout_s`` after admission."""
    if admitted_at is None:
        return
    waited = time.monotonic() - admitted_at
    if waited > timeout_s:
        raise Overloaded("queue_timeout", waited)


async def answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


def reject(retry_after_s: int) -> Shed:
    """``api.overload = reject``: 503, ``Retry-After``, and why."""
    def shed(scope: Scope, reason: str) -> Answer:
        body = json.dumps({"detail": f"overloaded ({reason}); retry after {retry_after_s} s",
                           "reason": reason}).encode()
        return 503, [(b"retry-after", str(retry_after_s).encode())], body
    return shed


def feed_request(scope: Scope) -> tuple[str, int | None, dict[str, str]]:
    """(user id, n, context) of a ``GET /v1/feed/{user_id}`` scope, as the route reads them."""
    user_id = scope["path"][len(FEED_PREFIX):].split("/", 1)[0]
    query = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
    raw_n = query.pop("n", None)
    n = int(raw_n) if raw_n and raw_n.isdigit() and int(raw_n) > 0 else None
    return user_id, n, query
