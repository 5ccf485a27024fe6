"""``bench serve``'s accounting against a scripted HTTP server: every answer lands in exactly one bucket
(full feed, degraded, shed, error, timeout), only full feeds make the achieved rate, latency counts
from the scheduled send, missing event -> feed answers are reported, CPU is per computed feed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from services.cli.bench_serve import Window, summarise
from services.cli.serve_load import LoadResult, Pool, open_loop
from services.cli.serve_seed import EventToFeed

FULL = b'{"user_id":"u","degraded":false,"model_version":"rk-2","index_version":"ix-7","items":[]}'
DEGRADED = b'{"user_id":"u","degraded":true,"items":[]}'
KINDS = ("full", "degraded", "shed", "error", "slow", "drop")
TIMEOUT_S = 0.3


def _response(status: int, body: bytes, extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n%s\r\n" % (status, len(body), extra)) + body


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers by the path's first segment (see KINDS); keeps the connection unless told not to."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            kind = head.split(b" ")[1].decode().strip("/").split("/")[0]
            if kind == "full":
                writer.write(_response(200, FULL, b"x-candidates: 480\r\nx-feature-rows: 19/20\r\n"
                                       b"server-timing: retrieval;dur=1.5, ranking;dur=2.0\r\n"))
            elif kind == "degraded":
                writer.write(_response(200, DEGRADED))
            elif kind == "shed":
                writer.write(_response(503, b'{"detail":"overloaded"}', b"retry-after: 1\r\n"))
            elif kind == "error":
                writer.write(_response(500, b"{}"))
            elif kind == "slow":
                await asyncio.sleep(5 * TIMEOUT_S)
                writer.write(_response(200, FULL))
            else:  # drop: the connection closes without an answer
                writer.close()
                return
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


def _run(paths: Callable[[int], str], rps: float, duration_s: float) -> tuple[LoadResult, float]:
    out = LoadResult()

    async def go() -> float:
        server = await asyncio.start_server(_serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = Pool(f"http://127.0.0.1:{port}", 64)
        start = time.perf_counter() + 0.05
        await open_loop(pool, paths, rps, duration_s, TIMEOUT_S, out, start)
        elapsed = time.perf_counter() - start
        await pool.close()
        server.close()
        return elapsed

    return out, asyncio.run(go())


def test_every_answer_is_counted_in_its_own_bucket():
    feeds, elapsed = _run(lambda k: f"/{KINDS[k % len(KINDS)]}/u{k}", rps=120, duration_s=1.0)
    assert feeds.sent == 120
    # errors: the 500s and the dropped connections; timeouts: the slow answers
    counts = (feeds.full_feeds, feeds.degraded, feeds.shed, feeds.errors, feeds.timeouts)
    assert counts == (20, 20, 20, 40, 20)
    assert feeds.all.get_total_count() == 120
    assert feeds.full.get_total_count() == 20 and feeds.quick.get_total_count() == 40
    # a timeout is recorded at the timeout at least, never as a fast answer
    assert feeds.all.get_max_value() >= TIMEOUT_S * 1e6
    assert feeds.full.get_max_value() < TIMEOUT_S * 1e6

    opts = {"items": 10, "rps": 120, "duration": 1.0, "events_rate": 5.0, "swap_every": 0.0}
    e2f = EventToFeed.__new__(EventToFeed)
    e2f.latencies_ms, e2f.sent = [100.0] * 8, 10
    window = Window({"api": 0.2, "bench": 0.1}, e2f, e2f_missing=2, swaps=3, swap_failures=0)
    out = summarise(feeds, LoadResult(), elapsed, opts, window)
    for key in ("achieved_rps", "latency_ms_p50", "latency_ms_p99", "latency_ms_max",
                "full_feed_latency_ms_p99", "errors", "degraded", "shed", "feature_rows_nonempty_fraction",
                "candidates_mean", "cpu_ms_per_feed", "floor_latency_ms_p50", "event_to_feed_ms_p99",
                "event_to_feed_missing", "swaps"):
        assert key in out, key
    assert out["achieved_rps"] == pytest.approx(20 / elapsed, rel=0.01)  # full feeds only
    assert out["errors"] == 40 and out["timeouts"] == 20 and out["degraded"] == 20 and out["shed"] == 20
    assert out["latency_ms_max"] >= TIMEOUT_S * 1e3
    assert out["feature_rows_nonempty_fraction"] == 0.95 and out["candidates_mean"] == 480
    assert out["cpu_ms_per_feed"] == pytest.approx(200 / 40)  # full + degraded feeds computed, not shed
    assert out["event_to_feed_missing"] == 2 and out["event_to_feed_received"] == 8 and out["swaps"] == 3
    assert out["index_versions_served"] == ["ix-7"] and out["model_versions_served"] == ["rk-2"]
    assert out["stages_ms"]["ranking"]["p50"] == 2.0


def test_latency_counts_from_the_schedule_not_the_send():
    """Open loop: a server that answers one request at a time (each 50 ms) at 40/s falls behind, and
    the waiting shows in the latency (a closed-loop client would report ~50 ms for every request)."""
    slow_serial = asyncio.Lock()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                async with slow_serial:
                    await asyncio.sleep(0.05)
                writer.write(_response(200, FULL))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    out = LoadResult()

    async def go() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        pool = Pool(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", 64)
        await open_loop(pool, lambda k: "/full", 40, 0.5, 5.0, out, time.perf_counter())
        await pool.close()
        server.close()

    asyncio.run(go())
    assert out.full_feeds == 20
    # the 20th request is served after ~20 x 50 ms = 1 s but was due at 0.475 s
    assert out.full.get_max_value() >= 0.4e6
