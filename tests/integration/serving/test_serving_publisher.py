"""Publisher with real Kafka + Redis: trigger in -> feed out on the feeds topic, same as the API's; its
feeds go through librdkafka: delivered to Tansu, or counted and queued again when the broker refuses."""

from __future__ import annotations

import os
import sys
import time
import urllib.request

from fastapi.testclient import TestClient
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.partitioner.default import murmur2
from serving_helpers import seed_state, small_world

from core.events import FeedTrigger, decode_feed, encode
from core.settings import Settings
from core.topics import Topics
from iokit import free_port, spawn
from services.api.app import create_app
from services.pipeline.build import build_pipeline
from services.pipeline.impressions import decode_impression
from services.publisher.kafka_io import CProducer
from services.publisher.service import Publisher
from tests.conftest import wait_until


def _create_topics(settings: Settings) -> Topics:
    topics = Topics(settings.kafka.topic_prefix)
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    admin.create_topics([NewTopic(t, 1, 1) for t in topics.all()])
    admin.close()
    return topics


def _env(settings: Settings, port: int) -> dict[str, str]:
    return {"STREAMREC_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers or "",
            "STREAMREC_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
            "STREAMREC_REDIS__URL": settings.redis.url or "",
            "STREAMREC_REDIS__KEY_PREFIX": settings.redis.key_prefix,
            "STREAMREC_DATA_DIR": str(settings.data_dir), "STREAMREC_PUBLISHER__METRICS_PORT": str(port),
            "STREAMREC_PUBLISHER__DEBOUNCE_MS": "50"}


def _wait_ready(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("publisher never became ready")


def _consume(settings: Settings, topic: str, want: int, timeout_s: float = 20.0) -> list[bytes]:
    consumer = KafkaConsumer(topic, bootstrap_servers=settings.kafka.bootstrap_servers,
                             auto_offset_reset="earliest", consumer_timeout_ms=500)
    out: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < want and time.monotonic() < deadline:
        out.extend(rec.value for rec in consumer)
    consumer.close()
    return out


def test_trigger_to_feed_topic(settings: Settings):
    topics = _create_topics(settings)
    items, events = small_world()
    seed_state(settings, items, events)
    port = free_port()
    log_dir = settings.data_dir / "logs"
    child = spawn("publisher", [sys.executable, "-m", "services.publisher"], log_dir,
                  env={**_env(settings, port), "PYTHONPATH": os.getcwd()})
    try:
        _wait_ready(port)
        producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
        t_event = time.time()
        for _ in range(3):  # debounced into one feed
            trigger = FeedTrigger(user_id="u1", event_ts=t_event)
            producer.send(topics.feed_triggers, key=b"u1", value=encode(trigger))
        producer.flush()
        feeds = [decode_feed(raw) for raw in _consume(settings, topics.feeds, 1)]
        assert len(feeds) == 1, feeds
        feed = feeds[0]
        assert feed.user_id == "u1" and feed.trigger_event_ts == t_event and not feed.degraded
        ids = [it.item_id for it in feed.items]
        assert "i000" not in ids and len(ids) == settings.publisher.feed_size
        pipeline, close = build_pipeline(settings, hot_swap=False)
        app = create_app(settings, pipeline, on_close=close)
        with TestClient(app) as client:
            assert app.state.ctx.producer.wait(20)
            api = client.get("/v1/feed/u1", params={"n": settings.publisher.feed_size}).json()
        assert [it["item_id"] for it in api["items"]] == ids  # same state -> same feed
        imps = [decode_impression(raw) for raw in _consume(settings, topics.impressions, 2)]
        assert {i.origin for i in imps} == {"api", "publisher"}
        pub = next(i for i in imps if i.origin == "publisher")
        assert pub.feed_id == feed.feed_id and pub.items == ids
        assert pub.propensities == [it.propensity for it in feed.items]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert 'streamrec_publisher_feeds_undelivered_total{kind="feed"}' not in resp.read().decode()
        assert child.stop() == 0  # SIGTERM -> graceful exit 0
    finally:
        child.stop()


def test_feeds_reach_tansu_and_an_undelivered_one_is_counted_and_queued_again(settings: Settings):
    topics = _create_topics(settings)
    items, events = small_world()
    seed_state(settings, items, events)
    pipeline, close = build_pipeline(settings, hot_swap=False)
    producer = CProducer(settings, "test")
    producer.start()
    kafka = settings.kafka.model_copy(update={"topic_prefix": "bad name!"})  # topics the broker refuses
    bad = settings.model_copy(update={"kafka": kafka})
    refused, good = Publisher(bad, pipeline, producer), Publisher(settings, pipeline, producer)
    try:
        assert producer.wait(20)
        assert refused.publish_user("u1", "interaction", time.time(), {("t", 0): 7})
        wait_until(lambda: len(refused.undelivered) == 1, "the broker's refusal")
        assert refused.metrics.undelivered.labels("feed")._value.get() == 1
        assert refused.requeue_undelivered() == 1 and refused.debouncer.min_offsets() == {("t", 0): 7}
        for user in ("u1", "u2"):
            assert good.publish_user(user, "interaction", time.time())
        assert producer.flush(10) == 0 and not good.undelivered
        feeds = [decode_feed(raw) for raw in _consume(settings, topics.feeds, 2)]
        assert sorted(f.user_id for f in feeds) == ["u1", "u2"] and not any(f.degraded for f in feeds)
    finally:
        refused.close()
        good.close()
        producer.close()
        close()


def test_keyed_records_land_on_the_partition_kafka_clients_compute(settings: Settings):
    """librdkafka's default partitioner (CRC32) would put a user's feeds where the client does not read
    them and split a user's events across partitions: the producer must hash keys as Kafka's Java
    client and kafka-python do (murmur2)."""
    topic = f"{settings.kafka.topic_prefix}keyed"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    admin.create_topics([NewTopic(topic, 4, 1)])
    admin.close()
    producer = CProducer(settings, "test")
    producer.start()
    keys = [f"user-{n}".encode() for n in range(40)]
    try:
        assert producer.wait(20)
        producer.send(topic, keys, keys, timeout_s=20)
    finally:
        producer.close()
    consumer = KafkaConsumer(topic, bootstrap_servers=settings.kafka.bootstrap_servers,
                             auto_offset_reset="earliest", consumer_timeout_ms=500)
    landed: dict[bytes, int] = {}
    deadline = time.monotonic() + 20
    while len(landed) < len(keys) and time.monotonic() < deadline:
        landed.update({rec.key: rec.partition for rec in consumer})
    consumer.close()
    expected = {k: (murmur2(k) & 0x7FFFFFFF) % 4 for k in keys}
    assert landed == expected and len(set(expected.values())) == 4
