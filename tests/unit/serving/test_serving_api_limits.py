"""Request limits of the feed API over an in-process app: non-finite numbers, negative values, batch
length, event size and body size each get their 4xx (never a 5xx), and the body limit holds without
reading a large body first."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from feature_store.online.memory_state import MemoryOnline
from funnel.pipeline import Pipeline
from services.api.app import create_app
from services.api.limits import BodySizeLimit

LIMIT = 64 * 1024
HOLE = "<number>"  # a placeholder replaced by a literal in the JSON text (a number such as 0.5 could also
# occur inside the event's timestamp, and replacing it there made the body invalid JSON)


@pytest.fixture
def client() -> TestClient:
    settings = Settings(api={"max_body_bytes": LIMIT, "max_batch_events": 50})
    app = create_app(settings, Pipeline(settings, MemoryOnline(settings)))
    return TestClient(app, raise_server_exceptions=False)


def _event(**over: object) -> dict[str, object]:
    return {"event_id": "e1", "user_id": "u1", "item_id": "a", "type": "click", "timestamp": time.time(),
            **over}


def _strict_json(text: str) -> Any:
    """Parse as a strict client would: NaN/Infinity literals are not JSON."""
    def refuse(literal: str) -> None:
        raise AssertionError(f"response carries the non-JSON literal {literal}")

    return json.loads(text, parse_constant=refuse)


def _post(client: TestClient, body: str | bytes) -> Any:
    return client.post("/v1/events", content=body, headers={"content-type": "application/json"})


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
@pytest.mark.parametrize("field", ["timestamp", "value", "propensity"])
def test_non_finite_numbers_are_422_naming_the_field(client: TestClient, literal: str, field: str):
    body = json.dumps(_event(**{field: HOLE})).replace(f'"{HOLE}"', literal)
    resp = _post(client, body)
    assert resp.status_code == 422, resp.text
    errors = _strict_json(resp.text)["detail"]
    assert any(e["loc"][-1] == field and e["type"] == "finite_number" for e in errors)


def test_non_finite_inside_a_batch_names_its_index(client: TestClient):
    body = "[" + json.dumps(_event()) + "," + json.dumps(_event(value=HOLE)).replace(f'"{HOLE}"', "NaN") + "]"
    resp = _post(client, body)
    assert resp.status_code == 422
    assert _strict_json(resp.text)["detail"][0]["loc"] == ["body", "batch", 1, "value"]


def test_negative_value_is_422(client: TestClient):
    resp = client.post("/v1/events", json=_event(type="dwell", value=-3.0))
    assert resp.status_code == 422 and resp.json()["detail"][0]["loc"][-1] == "value"


def test_overlong_batch_is_422_naming_the_limit(client: TestClient):
    resp = client.post("/v1/events", json=[_event(event_id=f"e{k}") for k in range(51)])
    assert resp.status_code == 422
    detail = resp.json()["detail"]
    assert detail["reason"] == "batch_too_long" and "api.max_batch_events" in detail["detail"]
    # at the limit the batch is valid: it only fails for want of Kafka here
    assert client.post("/v1/events", json=[_event(event_id=f"e{k}") for k in range(50)]).status_code == 503


def test_an_event_over_the_record_limit_is_422(client: TestClient):
    settings = Settings(api={"max_body_bytes": 1024 * 1024})
    big = TestClient(create_app(settings, Pipeline(settings, MemoryOnline(settings))))
    resp = big.post("/v1/events", json=[_event(), _event(context={"note": "x" * 70_000})])
    assert resp.status_code == 422 and resp.json()["detail"]["index"] == 1
    assert resp.json()["detail"]["reason"] == "oversized"


def test_oversize_body_is_413_naming_the_setting(client: TestClient):
    resp = _post(client, json.dumps([_event(event_id=f"e{k}") for k in range(40)]) + " " * LIMIT)
    assert resp.status_code == 413
    assert "api.max_body_bytes" in resp.json()["detail"] and str(LIMIT) in resp.json()["detail"]
    assert 'streamrec_api_requests_refused_total{reason="body_too_large"} 1.0' in client.get("http://testserver:8081/metrics").text


def test_chunked_oversize_body_is_413(client: TestClient):
    chunks = (b" " * 8192 for _ in range(20))
    assert client.post("/v1/events", content=chunks).status_code == 413


@pytest.mark.parametrize("body", [b"", b"{", b"\xff\xfe", b"null", b"[]", b"[[]]", b"[null]", b"1e999",
                                  b'{"timestamp": NaN}', b'"x"', b"[" + b"1," * 2000 + b"1]",
                                  json.dumps(_event(context={"k": 1.5})).encode()])
def test_odd_bodies_never_get_a_5xx(client: TestClient, body: bytes):
    resp = _post(client, body)
    assert resp.status_code < 500 or resp.json()["detail"].startswith("kafka"), resp.text
    _strict_json(resp.text)


def test_a_422_lists_at_most_20_errors_and_cuts_long_inputs(client: TestClient):
    resp = client.post("/v1/events", json=[{"bad": "x" * 1000}] * 40)
    body = resp.json()
    assert resp.status_code == 422 and len(body["detail"]) == 20 and body["more_errors"] > 0
    assert all(len(json.dumps(e.get("input"))) < 300 for e in body["detail"])


# ---- the middleware alone, over raw ASGI messages --------------------------------------------------
class _Client:
    """Feeds a body in chunks and records how many bytes were pulled before the response started."""

    def __init__(self, size: int, chunk: int = 16384) -> None:
        self.left, self.chunk = size, chunk
        self.pulled = 0
        self.pulled_at_start: int | None = None
        self.status: int | None = None

    async def receive(self) -> dict[str, Any]:
        n = min(self.chunk, self.left)
        self.left -= n
        self.pulled += n
        return {"type": "http.request", "body": b" " * n, "more_body": self.left > 0}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status, self.pulled_at_start = message["status"], self.pulled


def _run(headers: list[tuple[bytes, bytes]], size: int) -> tuple[_Client, list[bytes]]:
    seen: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        seen.append(message["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    client = _Client(size)
    scope = {"type": "http", "method": "POST", "path": "/v1/events", "headers": headers}
    asyncio.run(BodySizeLimit(app, LIMIT, "api.max_body_bytes")(scope, client.receive, client.send))
    return client, seen


def test_declared_oversize_is_refused_before_reading():
    client, seen = _run([(b"content-length", b"5242880"), (b"expect", b"100-continue")], 5 * 1024 * 1024)
    assert client.status == 413 and client.pulled == 0 and seen == []


def test_chunked_oversize_is_refused_after_at_most_the_limit():
    client, seen = _run([(b"transfer-encoding", b"chunked")], 5 * 1024 * 1024)
    assert client.status == 413 and seen == []
    assert client.pulled_at_start is not None and client.pulled_at_start <= LIMIT + client.chunk


def test_chunked_body_within_the_limit_reaches_the_app_whole():
    client, seen = _run([(b"transfer-encoding", b"chunked")], LIMIT - 10)
    assert client.status == 200 and seen == [b" " * (LIMIT - 10)]
