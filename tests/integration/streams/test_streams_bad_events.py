"""Bad events land in the DLQ with their reason and original bytes and leave no trace in the state;
a new item upserted mid-stream is a retrievable candidate within a second, before any retrain."""

from __future__ import annotations

import json
import time

import pytest
from kafka import KafkaConsumer
from streams_harness import (
    assert_same,
    dump,
    interactions,
    items,
    producer,
    ready,
    reference_state,
    start_worker,
    stats,
    stream_settings,  # noqa: F401 - fixture
    wait_for,
)

from core.events import MAX_EVENT_BYTES, DeadLetter, ItemUpsert, encode
from core.topics import Topics
from feature_store.online.keys import Keys
from feature_store.online.redis_state import RedisOnlineState, redis_client

pytestmark = pytest.mark.integration


def bad_records(now: float) -> list[tuple[bytes, str]]:
    base = {"event_id": "bad", "user_id": "u1", "item_id": "i1", "type": "click", "timestamp": now}
    return [
        (b"{this is not json", "unparseable"),
        (json.dumps({**base, "context": {"pad": "x" * MAX_EVENT_BYTES}}).encode(), "oversized"),
        (json.dumps({**base, "event_id": "future", "timestamp": now + 86400}).encode(), "future_timestamp"),
        (json.dumps({k: v for k, v in base.items() if k != "user_id"}).encode(), "missing_field"),
        (json.dumps({**base, "type": "teleport"}).encode(), "unknown_type"),
        (b"\xff\xfe\x00binary", "unparseable"),
    ]


def test_bad_events_go_to_dlq_and_state_is_as_if_never_sent(stream_settings) -> None:  # noqa: F811
    s = stream_settings
    topics = Topics(s.kafka.topic_prefix)
    now = time.time()
    catalog = items(20, now)
    good = interactions(400, users=40, n_items=20, now=now)
    bad = bad_records(now)
    prod = producer(s)
    for it in catalog:
        prod.send(topics.items, key=it.item_id.encode(), value=encode(it))
    prod.flush()
    worker = start_worker(s)
    try:
        wait_for(lambda: stats(s).get("items:processed", 0) == len(catalog), 60, "catalog", worker)
        for n, ev in enumerate(good):
            prod.send(topics.interactions, key=ev.user_id.encode(), value=encode(ev))
            if n % 60 == 0 and n // 60 < len(bad):
                prod.send(topics.interactions, key=b"u1", value=bad[n // 60][0])
        prod.flush()
        total = len(good) + len(bad)
        wait_for(lambda: stats(s).get("interactions:processed", 0)
                 + stats(s).get("interactions:dead_lettered", 0) >= total, 90, "all records", worker)
        wait_for(lambda: ready(s), 10, "readyz", worker)
        _new_item_is_a_candidate_within_a_second(s, topics)
    finally:
        assert worker.stop() == 0
    st = stats(s)
    assert st["interactions:processed"] == len(good)
    assert st["interactions:dead_lettered"] == len(bad)
    letters = _read_dlq(s, topics.dlq("interactions"), len(bad))
    assert sorted((d.original.raw(), d.reason) for d in letters if d.original) == sorted(bad)
    assert all(d.detail and d.source_topic == topics.interactions for d in letters)
    assert all(d.key is not None and d.key.raw() == b"u1" for d in letters)
    expected = dump(s, reference_state(s, catalog, good))
    actual = dump(s, s.redis.key_prefix)
    keys = Keys("")
    for key in (keys.item("late"), keys.vector("late"), keys.item_features("late")):
        del actual[key]
    actual[keys.fresh] = {k: v for k, v in actual[keys.fresh].items() if k != b"late"}
    actual[keys.active_items] = [i for i in actual[keys.active_items] if i != b"late"]
    assert_same(actual, expected)


def _new_item_is_a_candidate_within_a_second(s, topics: Topics) -> None:
    state = RedisOnlineState(redis_client(s), s)
    up = ItemUpsert(item_id="late", title="brand new jazz", categories=["jazz"], created_at=time.time())
    prod = producer(s)
    prod.send(topics.items, key=b"late", value=encode(up)).get(timeout=10)
    sent = time.monotonic()
    while time.monotonic() - sent < 1.0 and b"late" not in state.r.zrevrange(state.keys.fresh, 0, 9):
        time.sleep(0.01)
    assert b"late" in state.r.zrevrange(state.keys.fresh, 0, 9), "new item not in the fresh pool within 1 s"
    record = state.items(["late"])[0]
    assert record is not None and record.active and record.categories == ["jazz"]
    assert record.vector is not None and record.vector.shape[0] > 0
    assert Keys(s.redis.key_prefix).item("late")


def _read_dlq(s, topic: str, n: int) -> list[DeadLetter]:
    consumer = KafkaConsumer(topic, bootstrap_servers=s.kafka.bootstrap_servers,
                             auto_offset_reset="earliest", consumer_timeout_ms=5000)
    out = []
    for msg in consumer:
        assert msg.key == b"u1", "the dead letter keeps the original record's key"
        out.append(DeadLetter.model_validate_json(msg.value))
        if len(out) >= n:
            break
    consumer.close()
    return out
