"""The API counts the CPU of each computed feed in its feed thread (``streamrec_api_feed_cpu_seconds``),
not its wall time, and the CPU of each shed answer (``streamrec_api_shed_cpu_seconds``); ``WorkerCpu``
reads a thread's CPU so far (``bench serve``'s ``cpu_split`` is built from these)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from serving_events import click, memory_state

from core.settings import Settings
from funnel.pipeline import FeedResult, Pipeline
from services.api.admission import Admission
from services.api.app import create_app
from services.api.metrics import FEED_THREAD, WorkerCpu

BURN_S, SLEEP_S = 0.03, 0.1


def burn(seconds: float) -> None:
    """Spend ``seconds`` of this thread's CPU."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


class SlowPipeline(Pipeline):
    """The real funnel, plus BURN_S of CPU and SLEEP_S of waiting (a store round trip) per feed."""

    def feed(self, *args: Any, **kwargs: Any) -> FeedResult:
        burn(BURN_S)
        time.sleep(SLEEP_S)
        return super().feed(*args, **kwargs)


@pytest.fixture
def client() -> TestClient:
    settings = Settings(api={"feed_threads": 2, "queue_timeout_ms": 1000.0, "max_in_flight": 16})
    state = memory_state(settings, {i: ["c"] for i in "abcde"}, [click("u1", "a"), click("u2", "b")])
    return TestClient(create_app(settings, SlowPipeline(settings, state)))


def _sample(client: TestClient, name: str) -> float:
    return client.app.state.ctx.metrics.registry.get_sample_value(name) or 0.0  # type: ignore[attr-defined]


def test_a_computed_feed_counts_its_thread_cpu_not_its_wall_time(client: TestClient) -> None:
    with client:
        assert client.get("/v1/feed/u1").status_code == 200
        assert client.get("/v1/feed/u2").status_code == 200
    assert _sample(client, "streamrec_api_feed_cpu_seconds_count") == 2
    per_feed = _sample(client, "streamrec_api_feed_cpu_seconds_sum") / 2
    assert BURN_S <= per_feed < BURN_S + SLEEP_S * 0.8  # the burn counted, the sleep not
    assert _sample(client, "streamrec_api_shed_cpu_seconds_count") == 0


def test_a_shed_answer_counts_its_cpu(client: TestClient) -> None:
    with client:
        layer: Any = client.app.middleware_stack  # type: ignore[attr-defined]
        while not isinstance(layer, Admission):
            layer = layer.app
        layer.in_flight = layer.limit
        assert client.get("/v1/feed/u1").status_code == 503
    assert _sample(client, "streamrec_api_shed_cpu_seconds_count") == 1
    assert _sample(client, "streamrec_api_feed_cpu_seconds_count") == 0


def _cpu(collector: WorkerCpu) -> dict[str, float]:
    return {s.labels["thread"]: s.value for family in collector.collect() for s in family.samples}


def test_worker_cpu_reads_the_loop_and_feed_threads() -> None:
    cpu = WorkerCpu()
    cpu.loop_ident = threading.get_ident()  # this thread plays the event loop
    before = _cpu(cpu)
    burn(BURN_S)
    done = threading.Event()

    def work() -> None:
        burn(BURN_S)
        done.wait()

    feed = threading.Thread(target=work, name=f"{FEED_THREAD}_0")
    feed.start()
    time.sleep(BURN_S * 3)
    after = _cpu(cpu)
    done.set()
    feed.join()
    assert after["loop"] - before["loop"] >= BURN_S
    assert after["feed_pool"] - before["feed_pool"] >= BURN_S * 0.9
    assert after["process"] - before["process"] >= 2 * BURN_S * 0.9
