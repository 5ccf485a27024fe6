"""The spine, end to end with real processes: kafka-python in -> worker -> Redis -> publisher ->
feeds topic -> kafka-python out. The seen item is not recommended; items are ranked by popularity;
GET /v1/feed/{user} serves the same feed; a malformed event is dead-lettered with its reason and
does not stop the worker."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator

import pytest
from kafka import KafkaProducer

from core.events import Feed, Interaction, ItemUpsert, encode
from core.settings import Settings
from core.topics import INTERACTIONS, Topics
from services.demo.kafka_io import make_reader, read_feeds
from services.stack import PROCESSES, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

POPULARITY = {"i1": 5, "i2": 4, "i3": 3, "i4": 2, "i5": 1}  # distinct clickers per item
SEEN = "i2"


@pytest.fixture
def spine(settings: Settings) -> Iterator[Stack]:
    s = settings.model_copy(update={
        "rerank": settings.rerank.model_copy(
            update={"explore_slots": 0, "diversity": "none", "freshness_boost": 0.0}),
        "worker": settings.worker.model_copy(update={"content_model": False}),  # start faster
    })
    specs = [p for p in PROCESSES if p.name in ("worker", "publisher", "api")]
    with Stack(s, processes=specs, ready_timeout_s=150, feast_apply=False) as stack:
        yield stack


def _interaction(n: int, user: str, item: str, now: float) -> Interaction:
    return Interaction(event_id=f"spine-{n}", user_id=user, item_id=item, type="click",
                       timestamp=now, context={"device": "mobile"})


def _produce(producer: KafkaProducer, topics: Topics) -> float:
    now = time.time()
    for item in [*POPULARITY, "i6"]:
        # identical content: content similarity ties, so popularity alone decides the order
        up = ItemUpsert(item_id=item, title="news", categories=["c"], created_at=now - 3600)
        producer.send(topics.items, encode(up), key=item.encode())
    producer.flush(10)
    producer.send(topics.interactions, b'{"event_id": "broken", "user_id": ', key=b"x")
    n = 0
    for item, clicks in POPULARITY.items():
        for k in range(clicks):  # one click per user: no co-visitation between items
            n += 1
            producer.send(topics.interactions, encode(_interaction(n, f"{item}-fan{k}", item, now)),
                          key=f"{item}-fan{k}".encode())
    last = time.time()
    producer.send(topics.interactions, encode(_interaction(n + 1, "alice", SEEN, last)), key=b"alice")
    producer.flush(10)
    return last


def _feed_for(stack: Stack, user: str, after_ts: float, timeout_s: float) -> Feed:
    consumer = make_reader(stack.settings, Topics(stack.settings.kafka.topic_prefix).feeds)
    deadline = time.monotonic() + timeout_s
    try:
        for rec in read_feeds(consumer, lambda: time.monotonic() > deadline):
            if not isinstance(rec, Exception) and rec.feed.user_id == user \
                    and (rec.feed.trigger_event_ts or 0) >= after_ts - 1e-3:
                return rec.feed
    finally:
        consumer.close()
    pytest.fail(f"no feed for {user} on the feeds topic within {timeout_s}s; logs: {stack.log_dir}")


def _dead_letters(stack: Stack, timeout_s: float = 20.0) -> list[dict[str, object]]:
    topic = Topics(stack.settings.kafka.topic_prefix).dlq(INTERACTIONS)
    consumer = make_reader(stack.settings, topic)
    out: list[dict[str, object]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while not out and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=300).values():
                out.extend(json.loads(r.value) for r in recs)
    finally:
        consumer.close()
    return out


def test_interactions_become_a_popularity_feed_without_the_seen_item(spine: Stack):
    producer = KafkaProducer(bootstrap_servers=spine.settings.kafka.bootstrap_servers)
    last = _produce(producer, Topics(spine.settings.kafka.topic_prefix))
    producer.close(5)
    feed = _feed_for(spine, "alice", last, timeout_s=60)
    ids = [it.item_id for it in feed.items]
    assert SEEN not in ids
    popular = [i for i in ids if i in POPULARITY]
    assert popular == ["i1", "i3", "i4", "i5"], f"feed {ids} not ranked by popularity"
    assert [it.rank for it in feed.items] == list(range(len(feed.items)))
    with urllib.request.urlopen(spine.url("api", f"/v1/feed/alice?n={len(ids)}"), timeout=10) as resp:
        served = json.loads(resp.read())
    assert [it["item_id"] for it in served["items"]] == ids  # the HTTP API serves the same feed
    dead = _dead_letters(spine)
    assert dead and dead[0]["reason"] == "unparseable"
    assert not spine.dead_children()
