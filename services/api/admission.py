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

The event loop itself can fall behind: while two feed threads compute, it gets too small a share of the
GIL, and every request (a shed one too) waits for it. :class:`LoopLag` ticks on the loop every 10 ms
and measures how late it runs; while it runs more than ``api.max_loop_lag_ms`` behind and a feed is in
flight, every feed request is shed on arrival (reason ``loop_lag``), so the feed threads run out of work
and the loop catches up (a lagging loop with no feed in flight is not behind because of feeds).

Example:
    >>> gate = Admission(app, limit=16, shed=lambda scope, reason: (503, [], b"{}"))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

FEED_PREFIX = "/v1/feed/"
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
Shed = Callable[[Scope, str], Answer]
TICK_S = 0.01  # LoopLag's period


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
    dependencies and a thread hop; refused here it costs a fraction of that and is answered at once.
    With ``behind_s`` (``LoopLag.behind_s``), every feed request is shed while the event loop runs more
    than ``max_behind_s`` behind and a feed is in flight."""

    def __init__(self, app: ASGIApp, limit: int, shed: Shed,
                 on_shed: Callable[[str], None] = lambda reason: None,
                 wait_s: Callable[[int], float] | None = None, timeout_s: float = float("inf"),
                 behind_s: Callable[[], float] | None = None, max_behind_s: float = float("inf")) -> None:
        self.app, self.limit, self.shed, self.on_shed = app, limit, shed, on_shed
        self.wait_s, self.timeout_s = wait_s, timeout_s
        self.behind_s, self.max_behind_s = behind_s, max_behind_s
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
        if self.in_flight and self.behind_s is not None and self.behind_s() > self.max_behind_s:
            return "loop_lag"
        if self.wait_s is not None and self.wait_s(self.in_flight) > self.timeout_s:
            return "expected_wait"
        return ""


class LoopLag:
    """How far behind the event loop runs: a ticker on the loop, due every ``period_s``, records how
    late each tick ran. ``behind_s`` is the larger of the last tick's lateness and how overdue the
    next tick is (a loop stalled right now reads as behind before its ticker gets to run). 0 until
    :meth:`start`. ``on_tick`` gets each tick's lateness (the API's loop-lag histogram)."""

    def __init__(self, period_s: float = TICK_S, clock: Callable[[], float] = time.monotonic,
                 on_tick: Callable[[float], None] = lambda late_s: None) -> None:
        self.period_s, self.clock, self.on_tick = period_s, clock, on_tick
        self.late_s, self.due = 0.0, float("inf")
        self._task: asyncio.Task[None] | None = None

    def behind_s(self) -> float:
        return max(self.late_s, self.clock() - self.due)

    def tick(self) -> float:
        """Record a tick running now; the delay until the next one."""
        now = self.clock()
        self.late_s = max(0.0, now - self.due)
        self.due = now + self.period_s
        self.on_tick(self.late_s)
        return self.period_s

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.tick())

    def start(self) -> None:
        """Tick on the running loop (the app's lifespan)."""
        self.due = self.clock() + self.period_s
        self._task = asyncio.get_running_loop().create_task(self.run(), name="loop-lag")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._task, self.late_s, self.due = None, 0.0, float("inf")


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
