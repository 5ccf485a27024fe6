"""``python -m services.api`` with real Kafka + Redis: ready, events to Kafka, feed, SIGTERM -> 0."""

from __future__ import annotations

import os
import sys
import time

import httpx
from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient, NewTopic
from serving_helpers import seed_state, small_world, wait_ready

from core.events import decode_interaction
from core.settings import Settings
from core.topics import Topics
from iokit import free_port, spawn


def test_api_process_writes_events_and_serves_feeds(settings: Settings):
    topics = Topics(settings.kafka.topic_prefix)
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    admin.create_topics([NewTopic(t, 1, 1) for t in topics.all()])
    admin.close()
    seed_state(settings, *small_world())
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
        ev = {"event_id": "api-1", "user_id": "u7", "item_id": "i003", "type": "like",
              "timestamp": time.time()}
        assert httpx.post(f"{url}/v1/events", json=ev).status_code == 202
        feed = httpx.get(f"{url}/v1/feed/u7", params={"n": 5, "device": "mobile"}).json()
        assert len(feed["items"]) == 5 and not feed["degraded"]
        consumer = KafkaConsumer(topics.interactions, bootstrap_servers=settings.kafka.bootstrap_servers,
                                 auto_offset_reset="earliest")
        got, deadline = [], time.monotonic() + 15
        while not got and time.monotonic() < deadline:
            got = [decode_interaction(r.value) for rs in consumer.poll(500).values() for r in rs]
        consumer.close()
        assert [(g.event_id, g.user_id) for g in got] == [("api-1", "u7")]
        assert child.stop() == 0
    finally:
        child.stop()
