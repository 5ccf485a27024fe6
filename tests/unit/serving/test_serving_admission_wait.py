"""Admission sheds on arrival a feed request that would wait longer than ``api.queue_timeout_ms`` to
start (its expected wait from the requests in flight and the recent time per feed), before routing
and without a thread hop; one that would start in time is admitted."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi.testclient import TestClient
from serving_events import click, memory_state

from core.settings import Settings
from funnel.pipeline import Pipeline
from services.api.admission import Admission
from services.api.app import create_app


def _run(gate: Admission, path: str = "/v1/feed/u1") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(gate({"type": "http", "path": path, "query_string": b"", "headers": []}, receive, send))
    return sent


class _App:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


@pytest.mark.parametrize(("in_flight", "reason"), [(0, ""), (3, ""), (4, ""), (5, "expected_wait"),
                                                    (16, "in_flight")])
def test_a_request_that_would_start_late_is_shed_on_arrival(in_flight: int, reason: str):
    app, shed = _App(), []
    gate = Admission(app, limit=16, shed=lambda scope, why: (503, [], why.encode()), on_shed=shed.append,
                     wait_s=lambda n: n * 0.01, timeout_s=0.04)
    gate.in_flight = in_flight
    sent = _run(gate)
    assert sent[0]["status"] == (503 if reason else 200)
    assert shed == ([reason] if reason else []) and app.calls == (0 if reason else 1)
    assert gate.in_flight == in_flight  # an admitted request leaves the count as it found it


def test_other_paths_are_never_shed():
    app = _App()
    gate = Admission(app, limit=1, shed=lambda scope, why: (503, [], b""), wait_s=lambda n: 1.0,
                     timeout_s=0.04)
    gate.in_flight = 5
    assert _run(gate, "/v1/items/a/similar")[0]["status"] == 200


@pytest.fixture
def client() -> TestClient:
    settings = Settings(api={"feed_threads": 2, "queue_timeout_ms": 40.0, "max_in_flight": 16})
    state = memory_state(settings, {i: ["c"] for i in "abcde"}, [click("u1", "a"), click("u2", "b")])
    return TestClient(create_app(settings, Pipeline(settings, state)))


def _admission(client: TestClient) -> Admission:
    layer: Any = client.app.middleware_stack  # type: ignore[attr-defined]
    while not isinstance(layer, Admission):
        layer = layer.app
    return layer


def test_the_api_sheds_by_the_feed_threads_recent_time_per_feed(client: TestClient):
    with client:
        assert client.get("/v1/feed/u1").status_code == 200
        feeds = client.app.state.ctx.feeds  # type: ignore[attr-defined]
        assert feeds.service_s > 0  # a computed feed's time enters the mean
        gate = _admission(client)
        assert gate.wait_s == feeds.expected_wait_s and gate.timeout_s == pytest.approx(0.04)
        feeds.service_s = 0.02  # two threads: one frees every 10 ms
        assert feeds.expected_wait_s(1) == 0.0 and feeds.expected_wait_s(2) == pytest.approx(0.005)
        gate.in_flight = 5  # 3 queued ahead: 35 ms, starts in time
        assert client.get("/v1/feed/u2").status_code == 200
        gate.in_flight = 6  # 4 queued ahead: 45 ms
        resp = client.get("/v1/feed/u2")
        assert resp.status_code == 503 and resp.headers["retry-after"] == "1"
        assert resp.json()["reason"] == "expected_wait"
        gate.in_flight = 0
