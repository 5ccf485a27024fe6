"""Rate limits across API processes: two ``python -m services.api`` (uvicorn, real Kafka + Redis, keys in
one control database) share each key's token bucket through Redis. A burst beyond ``burst`` gets 429
with ``Retry-After`` from both processes, the total admitted equals the bucket, another key has a
bucket of its own, and after ``Retry-After`` seconds the key is served again."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from kafka.admin import KafkaAdminClient, NewTopic
from serving_helpers import wait_ready

from core.settings import Settings
from core.tenancy import control_url
from core.topics import Topics
from iokit import free_port, spawn
from services.metadata.access_store import AccessStore

pytestmark = pytest.mark.integration
BURST, RATE = 6, 0.2  # 6 at once, then one every 5 s


@pytest.fixture
def two_apis(settings: Settings) -> Iterator[list[str]]:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    admin.create_topics([NewTopic(t, 1, 1) for t in Topics(settings.kafka.topic_prefix).all()])
    admin.close()
    AccessStore(control_url(settings)).close()  # migrate once, before two processes race to
    limits = {"feed:read": {"rate_per_s": RATE, "burst": BURST}}
    children, urls = [], []
    try:
        for name in ("api-a", "api-b"):
            port, ops_port = free_port(), free_port()
            env = {"STREAMREC_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers or "",
                   "STREAMREC_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
                   "STREAMREC_REDIS__URL": settings.redis.url or "",
                   "STREAMREC_REDIS__KEY_PREFIX": settings.redis.key_prefix,
                   "STREAMREC_DATA_DIR": str(settings.data_dir), "STREAMREC_API__PORT": str(port),
                   "STREAMREC_API__OPS_PORT": str(ops_port), "STREAMREC_AUTH__ENABLED": "true",
                   "STREAMREC_AUTH__RATE_LIMITS": json.dumps(limits), "PYTHONPATH": os.getcwd(),
                   "STREAMREC_API__QUEUE_TIMEOUT_MS": "10000",  # shedding is not this test's subject
                   "STREAMREC_API__MAX_LOOP_LAG_MS": "0"}
            children.append(spawn(name, [sys.executable, "-m", "services.api"], settings.data_dir / "logs",
                                  env))
            urls.append(f"http://127.0.0.1:{port}")
            wait_ready(f"http://127.0.0.1:{ops_port}", timeout_s=60.0)
        yield urls
    finally:
        for child in children:
            child.stop()


def test_burst_gets_429_with_retry_after_and_the_bucket_is_shared(settings: Settings, two_apis: list[str]):
    store = AccessStore(control_url(settings))
    key, _ = store.create_key("default", ["feed:read"], name="burst")
    other, _ = store.create_key("default", ["feed:read"], name="calm")
    results: list[tuple[int, int, str | None]] = []  # (process, status, Retry-After)
    with httpx.Client(timeout=10) as http:
        started = time.monotonic()
        for k in range(4 * BURST):
            resp = http.get(f"{two_apis[k % 2]}/v1/feed/u1", headers={"X-API-Key": key})
            results.append((k % 2, resp.status_code, resp.headers.get("retry-after")))
        served = [r for r in results if r[1] == 200]
        limited = [r for r in results if r[1] == 429]
        assert len(served) + len(limited) == len(results), results
        refilled = int((time.monotonic() - started) * RATE) + 1  # tokens that may have come back meanwhile
        # one bucket for both processes: BURST in all (plus what came back), not twice that
        assert BURST <= len(served) <= BURST + refilled < 2 * BURST, results
        assert {p for p, _, _ in limited} == {0, 1}  # both processes refuse once the shared bucket is empty
        assert all(ra is not None and 1 <= int(ra) <= int(1 / RATE) + 1 for _, _, ra in limited), limited
        assert http.get(f"{two_apis[1]}/v1/feed/u1", headers={"X-API-Key": other}).status_code == 200
        time.sleep(int(limited[-1][2] or 0))
        assert http.get(f"{two_apis[0]}/v1/feed/u1", headers={"X-API-Key": key}).status_code == 200
        body = http.get(f"{two_apis[0]}/v1/feed/u1", headers={"X-API-Key": key}).json()
        assert "rate limit of scope 'feed:read'" in body["detail"]
