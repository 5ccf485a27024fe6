"""``python -m services.api`` (uvicorn, real Kafka + Redis) under bad requests with default limits: NaN,
Infinity, a 5 MB body (declared and chunked, from httpx and from the standard library's urllib), a
20,000-event batch and an overlong batch each get their 4xx, never a 5xx; nothing refused reaches
Kafka, and the API keeps serving."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import httpx
import pytest
from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient, NewTopic
from serving_helpers import wait_ready

from core.events import decode_interaction
from core.settings import Settings
from core.topics import Topics
from iokit import ChildProcess, free_port, spawn

pytestmark = pytest.mark.integration
MB = 1024 * 1024


def _event(event_id: str, **over: object) -> dict[str, object]:
    return {"event_id": event_id, "user_id": "u1", "item_id": "i1", "type": "click", "timestamp": time.time(),
            **over}


@pytest.fixture
def api(settings: Settings) -> Iterator[tuple[str, ChildProcess]]:
    topics = Topics(settings.kafka.topic_prefix)
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    admin.create_topics([NewTopic(t, 1, 1) for t in topics.all()])
    admin.close()
    port, ops_port = free_port(), free_port()
    env = {"STREAMREC_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers or "",
           "STREAMREC_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
           "STREAMREC_REDIS__URL": settings.redis.url or "",
           "STREAMREC_REDIS__KEY_PREFIX": settings.redis.key_prefix,
           "STREAMREC_DATA_DIR": str(settings.data_dir), "STREAMREC_API__PORT": str(port),
           "STREAMREC_API__OPS_PORT": str(ops_port), "PYTHONPATH": os.getcwd()}
    child = spawn("api", [sys.executable, "-m", "services.api"], settings.data_dir / "logs", env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"http://127.0.0.1:{ops_port}")  # health on the ops port
        yield url, child
    finally:
        child.stop()


def _post(url: str, body: bytes | Iterator[bytes]) -> httpx.Response:
    return httpx.post(f"{url}/v1/events", content=body, headers={"content-type": "application/json"},
                      timeout=30)


def _urllib_post(url: str, body: bytes) -> tuple[int, str]:
    req = urllib.request.Request(f"{url}/v1/events", data=body, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - test URL
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _strict(text: str) -> object:
    def refuse(literal: str) -> None:
        raise AssertionError(f"response carries the non-JSON literal {literal}")

    return json.loads(text, parse_constant=refuse)


def test_bad_requests_get_their_4xx_from_the_real_server(api: tuple[str, ChildProcess], settings: Settings):
    url, child = api
    for literal, field in (("NaN", "timestamp"), ("Infinity", "value"), ("-Infinity", "propensity")):
        body = json.dumps(_event("bad", **{field: "__LITERAL__"})).replace('"__LITERAL__"', literal).encode()
        resp = _post(url, body)
        assert resp.status_code == 422, resp.text
        assert _strict(resp.text)["detail"][0]["loc"][-1] == field  # type: ignore[index]

    five_mb = b"[" + json.dumps(_event("pad", context={"pad": "x" * 1000})).encode() + b" " * (5 * MB) + b"]"
    resp = _post(url, five_mb)
    assert resp.status_code == 413 and "api.max_body_bytes" in resp.json()["detail"]
    assert _post(url, (five_mb[k:k + 65536] for k in range(0, len(five_mb), 65536))).status_code == 413
    assert _urllib_post(url, five_mb)[0] == 413  # a client that sends it all before reading

    batch = [_event(f"b{k}", context={"page": "p" * 100}) for k in range(20_000)]
    assert len(json.dumps(batch)) > 3 * MB
    assert _post(url, json.dumps(batch).encode()).status_code == 413
    resp = _post(url, json.dumps(batch[:1001]).encode())
    assert resp.status_code == 422 and "api.max_batch_events" in resp.json()["detail"]["detail"]

    assert _post(url, json.dumps([_event("ok-1"), _event("ok-2")]).encode()).status_code == 202
    assert child.alive()
    assert _kafka_event_ids(settings) == ["ok-1", "ok-2"]  # nothing refused was written
    assert child.stop() == 0


def _kafka_event_ids(settings: Settings) -> list[str]:
    consumer = KafkaConsumer(Topics(settings.kafka.topic_prefix).interactions,
                             bootstrap_servers=settings.kafka.bootstrap_servers, auto_offset_reset="earliest")
    got: list[str] = []
    deadline = time.monotonic() + 15
    while len(got) < 2 and time.monotonic() < deadline:
        got += [decode_interaction(r.value).event_id for rs in consumer.poll(500).values() for r in rs]
    for rs in consumer.poll(1000).values():  # anything more would show up here
        got += [decode_interaction(r.value).event_id for r in rs]
    consumer.close()
    return got
