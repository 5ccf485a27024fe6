"""Admission control of ``python -m services.api`` over a real redis-server: a flood of feed requests,
then the same flood with Redis stalled (SIGSTOP: connections accepted, nothing answered). Every request
gets a fast 503 with Retry-After or a degraded feed (per ``api.overload``), none hangs, and the API
serves full feeds again once Redis answers. The client is ``bench serve``'s lean open-loop one (a
request is due at its scheduled time, and late answers count as late)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from serving_helpers import seed_state, small_world

from core.settings import ApiSettings, Settings, load_settings
from iokit import free_port, spawn
from services.cli.serve_load import LoadResult, Pool, open_loop
from services.localstack import start_redis

pytestmark = pytest.mark.integration
FLOOD_RPS, FLOOD_S = 1000.0, 0.2  # 200 requests in a fifth of a second, against max_in_flight = 4
# no answer may take this long: Redis' deadline is 0.1 s, the queue timeout 40 ms; the rest is one
# process parsing and answering 200 requests on a shared 2-core machine (about 1-3 ms each)
HANG_S = 2.0


@contextmanager
def api_process(settings: Settings, overload: str) -> Iterator[str]:
    """The feed API as the Deployment runs it (its own process), small admission limits."""
    port = free_port()
    env = {"STREAMREC_REDIS__URL": settings.redis.url or "", "STREAMREC_REDIS__KEY_PREFIX":
           settings.redis.key_prefix, "STREAMREC_DATA_DIR": str(settings.data_dir),
           "STREAMREC_API__PORT": str(port), "STREAMREC_API__MAX_IN_FLIGHT": "4",
           "STREAMREC_API__FEED_THREADS": "2", "STREAMREC_API__QUEUE_TIMEOUT_MS": "40",
           "STREAMREC_API__OVERLOAD": overload, "STREAMREC_API__RETRY_AFTER_S": "1",
           "PYTHONPATH": os.getcwd()}
    if "ops_port" in ApiSettings.model_fields:  # health and metrics on a port of their own
        env["STREAMREC_API__OPS_PORT"] = str(free_port())
    child = spawn("api", [sys.executable, "-m", "services.api"], settings.data_dir / "logs", env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _full_feed(url):
            assert child.alive() and time.monotonic() < deadline, "the API never served a full feed"
            time.sleep(0.2)
        yield url
    finally:
        child.stop()


def _full_feed(url: str) -> bool:
    try:
        resp = httpx.get(f"{url}/v1/feed/u1", params={"n": 10}, timeout=5)
    except httpx.HTTPError:
        return False
    return resp.status_code == 200 and resp.json()["degraded"] is False


def _flood(url: str) -> LoadResult:
    out = LoadResult()

    async def go() -> None:
        pool = Pool(url, 1024)
        await open_loop(pool, lambda k: f"/v1/feed/u{k % 8}?n=10", FLOOD_RPS, FLOOD_S, HANG_S, out,
                        time.perf_counter())
        await pool.close()

    asyncio.run(go())
    return out


def _fast_and_bounded(out: LoadResult, overload: str) -> None:
    assert out.sent == int(FLOOD_RPS * FLOOD_S)
    seen = {q: out.all.get_value_at_percentile(q) / 1e3 for q in (50, 99, 100)}
    assert (out.errors, out.timeouts) == (0, 0), f"every request answered (200 or 503) in time: ms {seen}"
    assert out.all.get_max_value() < HANG_S * 1e6, seen
    if overload == "reject":
        assert out.shed > 0, "a flood beyond api.max_in_flight must shed"
    else:
        assert out.shed == 0 and out.degraded > 0, "overload = degraded answers a degraded feed"


@pytest.mark.parametrize("overload", ["reject", "degraded"])
def test_flood_and_stalled_redis_get_fast_answers_never_a_hang(tmp_path: Path, overload: str):
    url, redis_child = start_redis(tmp_path / "redis", tmp_path / "logs")
    try:
        settings = load_settings(data_dir=str(tmp_path), redis={"url": url, "key_prefix": "sr:adm:"})
        seed_state(settings, *small_world())
        with api_process(settings, overload) as base:
            healthy = _flood(base)
            _fast_and_bounded(healthy, overload)
            assert healthy.full_feeds > 0

            os.kill(redis_child.pid, signal.SIGSTOP)
            try:
                stalled = _flood(base)
            finally:
                os.kill(redis_child.pid, signal.SIGCONT)
            _fast_and_bounded(stalled, overload)
            assert stalled.full_feeds == 0, "no full feed can be computed while Redis answers nothing"

            deadline = time.monotonic() + 15
            while not _full_feed(base):  # the breaker closes again: full feeds come back
                assert time.monotonic() < deadline, "the API did not recover once Redis answered"
                time.sleep(0.2)
    finally:
        redis_child.stop()
