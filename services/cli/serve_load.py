"""Open-loop HTTP load for ``streamrec bench serve``: a lean keep-alive HTTP/1.1 client on uvloop.

httpx spends ~0.5 ms of Python per request; at the quoted rates that would be a core of the two the
server under test runs on. Here a request is one pre-built line written to a pooled connection and a
response is the status line, the few headers read and ``Content-Length`` bytes (~50 us a request).

Requests are sent on a fixed schedule (``start + k / rps``) whatever happened to the earlier ones, and
each latency is measured from its scheduled time, so waiting for a connection or in any queue counts
(no coordinated omission). Every answer is classified: a full feed (200, not degraded), degraded (200
with ``"degraded":true``), shed (503), an error (any other status, a broken connection) or a timeout
(no complete answer within ``timeout_s``, counted at ``timeout_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np
from hdrh.histogram import HdrHistogram

VERSIONS = re.compile(rb'"(model_version|index_version)":"([^"]*)"')
STAGES = ("retrieval", "features", "ranking", "reranking")


def _hist() -> HdrHistogram:
    return HdrHistogram(1, 120_000_000, 3)  # microseconds


@dataclass
class Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


@dataclass
class LoadResult:
    """Counts and latency histograms of one open-loop run."""

    all: HdrHistogram = field(default_factory=_hist)
    full: HdrHistogram = field(default_factory=_hist)
    quick: HdrHistogram = field(default_factory=_hist)  # shed and degraded answers
    sent: int = 0
    full_feeds: int = 0
    degraded: int = 0
    shed: int = 0
    errors: int = 0
    timeouts: int = 0
    candidates: list[int] = field(default_factory=list)
    rows: list[tuple[int, int]] = field(default_factory=list)  # (non-empty, total) Feast rows a feed read
    stages: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    versions: dict[str, set[str]] = field(
        default_factory=lambda: {"model_version": set(), "index_version": set()})

    def record(self, answer: Answer | None, latency_s: float, timed_out: bool = False) -> None:
        us = max(1, int(latency_s * 1e6))
        self.all.record_value(us)
        if timed_out:
            self.timeouts += 1
        elif answer is None or answer.status not in (200, 503):
            self.errors += 1
        elif answer.status == 503:
            self.shed += 1
            self.quick.record_value(us)
        elif b'"degraded":true' in answer.body:
            self.degraded += 1
            self.quick.record_value(us)
        else:
            self.full_feeds += 1
            self.full.record_value(us)
            self._feed(answer)

    def _feed(self, answer: Answer) -> None:
        h = answer.headers
        self.candidates.append(int(h.get(b"x-candidates", b"0")))
        nonempty, _, total = h.get(b"x-feature-rows", b"0/0").partition(b"/")
        self.rows.append((int(nonempty), int(total or 0)))
        for part in h.get(b"server-timing", b"").decode().split(","):
            name, _, dur = part.strip().partition(";dur=")
            if name in self.stages and dur:
                self.stages[name].append(float(dur))
        for name, value in VERSIONS.findall(answer.body[:4096]):
            self.versions[name.decode()].add(value.decode())


class Pool:
    """Keep-alive connections to one server, opened on demand up to ``size``."""

    def __init__(self, base_url: str, size: int) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.size, self.open = size, 0
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def get(self, path: str, timeout_s: float) -> Answer:
        """The answer to ``GET path`` within ``timeout_s`` (waiting for a connection included: raises
        ``TimeoutError``). A kept-alive connection the server closed meanwhile is replaced once."""
        deadline = time.perf_counter() + timeout_s
        async with asyncio.timeout(timeout_s):
            conn, fresh = await self._acquire()
        while True:
            try:
                answer = await asyncio.wait_for(_exchange(conn, self.host, path),
                                                max(deadline - time.perf_counter(), 1e-3))
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                self._drop(conn)
                if fresh or (isinstance(exc, asyncio.IncompleteReadError) and exc.partial):
                    raise
                conn, fresh = await asyncio.wait_for(self._connect(),
                                                     max(deadline - time.perf_counter(), 1e-3))
                continue
            except BaseException:
                self._drop(conn)
                raise
            break
        if answer.headers.get(b"connection") == b"close":
            self._drop(conn)
        else:
            self.idle.put_nowait(conn)
        return answer

    async def _acquire(self) -> tuple[tuple[asyncio.StreamReader, asyncio.StreamWriter], bool]:
        """(connection, opened just now)."""
        if self.idle.empty() and self.open < self.size:
            return await self._connect()
        return await self.idle.get(), False

    async def _connect(self) -> tuple[tuple[asyncio.StreamReader, asyncio.StreamWriter], bool]:
        self.open += 1
        try:
            return await asyncio.open_connection(self.host, self.port), True
        except BaseException:
            self.open -= 1
            raise

    def _drop(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.open -= 1
        conn[1].close()

    async def close(self) -> None:
        while not self.idle.empty():
            self._drop(self.idle.get_nowait())


async def _exchange(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], host: str, path: str) -> Answer:
    reader, writer = conn
    writer.write(b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path.encode(), host.encode()))
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return Answer(status, headers, body)


async def open_loop(pool: Pool, paths: Callable[[int], str], rps: float, duration_s: float,
                    timeout_s: float, out: LoadResult, start: float) -> None:
    """Sends ``paths(k)`` at ``start + k / rps`` for ``duration_s``; waits for every answer."""
    total = int(rps * duration_s)
    tasks = set()
    for k in range(total):
        due = start + k / rps
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(_one(pool, paths(k), due, timeout_s, out))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        out.sent += 1
    if tasks:
        await asyncio.gather(*tasks)


async def _one(pool: Pool, path: str, due: float, timeout_s: float, out: LoadResult) -> None:
    left = timeout_s - (time.perf_counter() - due)
    try:
        answer = await pool.get(path, max(left, 1e-3))
    except TimeoutError:
        out.record(None, max(time.perf_counter() - due, timeout_s), timed_out=True)
        return
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError):
        out.record(None, time.perf_counter() - due)
        return
    out.record(answer, time.perf_counter() - due)


def percentile_ms(h: HdrHistogram, q: float) -> float | None:
    return round(h.get_value_at_percentile(q) / 1e3, 3) if h.get_total_count() else None


def max_ms(h: HdrHistogram) -> float | None:
    return round(h.get_max_value() / 1e3, 3) if h.get_total_count() else None


def quantile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def run(coro_factory: Callable[[], object]) -> None:
    """Run on uvloop when it is installed (a cheaper client loop), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        asyncio.run(coro_factory())  # type: ignore[arg-type]
        return
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(coro_factory())  # type: ignore[arg-type]
