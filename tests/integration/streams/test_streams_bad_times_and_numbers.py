"""The worker's decoder holds item and user records to the same bounds as interactions: an item whose
``created_at`` is ten years ahead goes to the DLQ (it would rank first as the freshest item for a
decade), and so do non-finite numbers (the JSON literals NaN/Infinity, which Python's parser accepts)
and negative interaction values. Valid records around them are applied."""

from __future__ import annotations

import json
import time

import pytest
from kafka import KafkaConsumer
from streams_harness import (
    items,
    producer,
    start_worker,
    stats,
    stream_settings,  # noqa: F401 - fixture
    wait_for,
)

from core.events import UserUpsert, encode
from core.settings import Settings
from core.topics import Topics
from feature_store.online.redis_state import RedisOnlineState, redis_client

pytestmark = pytest.mark.integration
TEN_YEARS = 10 * 365 * 86400.0


def _bad_items(now: float) -> list[tuple[str, bytes, str]]:
    item = {"item_id": "from-the-future", "title": "time traveller", "categories": ["jazz"],
            "created_at": now + TEN_YEARS, "timestamp": now}
    nan_attr = {**item, "item_id": "nan-price", "created_at": now - 60, "attributes": {"price": 0.5}}
    return [("from-the-future", json.dumps(item).encode(), "future_created_at"),
            ("nan-price", json.dumps(nan_attr).replace("0.5", "NaN").encode(), "non_finite")]


def _bad_user(now: float) -> bytes:
    return json.dumps({"user_id": "u-inf", "attributes": {"age": 0.5}, "timestamp": now}
                      ).replace("0.5", "Infinity").encode()


def _bad_interactions(now: float) -> list[tuple[bytes, str]]:
    base = {"event_id": "x", "user_id": "u1", "item_id": "i1", "type": "dwell", "timestamp": now}
    return [(json.dumps({**base, "value": 0.5}).replace("0.5", "-Infinity").encode(), "non_finite"),
            (json.dumps({**base, "event_id": "neg", "value": -12.0}).encode(), "invalid_field")]


def test_future_created_at_and_non_finite_numbers_are_dead_lettered(stream_settings: Settings) -> None:  # noqa: F811
    s = stream_settings
    topics, now = Topics(s.kafka.topic_prefix), time.time()
    good_items = items(5, now)
    prod = producer(s)
    for it in good_items[:3]:
        prod.send(topics.items, key=it.item_id.encode(), value=encode(it))
    for key, raw, _ in _bad_items(now):
        prod.send(topics.items, key=key.encode(), value=raw)
    for it in good_items[3:]:
        prod.send(topics.items, key=it.item_id.encode(), value=encode(it))
    prod.send(topics.users, key=b"u-inf", value=_bad_user(now))
    prod.send(topics.users, key=b"u-ok", value=encode(UserUpsert(user_id="u-ok", attributes={"age": 31.0})))
    for raw, _ in _bad_interactions(now):
        prod.send(topics.interactions, key=b"u1", value=raw)
    prod.flush()
    worker = start_worker(s)
    try:
        wait_for(lambda: stats(s).get("items:processed", 0) + stats(s).get("items:dead_lettered", 0) >= 7
                 and stats(s).get("users:processed", 0) + stats(s).get("users:dead_lettered", 0) >= 2
                 and stats(s).get("interactions:dead_lettered", 0) >= 2, 90, "all records", worker)
    finally:
        assert worker.stop() == 0
    st = stats(s)
    assert (st["items:processed"], st["items:dead_lettered"]) == (5, 2)
    assert st["items:dlq:future_created_at"] == 1 and st["items:dlq:non_finite"] == 1
    assert (st["users:processed"], st["users:dlq:non_finite"]) == (1, 1)
    assert st["interactions:dlq:non_finite"] == 1 and st["interactions:dlq:invalid_field"] == 1
    assert st.get("interactions:processed", 0) == 0

    state = RedisOnlineState(redis_client(s), s)
    fresh = {m.decode() for m in state.r.zrevrange(state.keys.fresh, 0, 49)}
    assert "from-the-future" not in fresh and {it.item_id for it in good_items} <= fresh
    assert state.items(["from-the-future", "nan-price"]) == [None, None]
    letters = _dlq(s, topics.dlq("items"), 2)
    assert sorted(d["reason"] for d in letters) == ["future_created_at", "non_finite"]
    future = next(d for d in letters if d["reason"] == "future_created_at")
    assert "created_at" in future["detail"] and "in the future" in future["detail"]


def _dlq(s: Settings, topic: str, n: int) -> list[dict[str, object]]:
    consumer = KafkaConsumer(topic, bootstrap_servers=s.kafka.bootstrap_servers,
                             auto_offset_reset="earliest", consumer_timeout_ms=5000)
    out = []
    for msg in consumer:
        out.append(json.loads(msg.value))
        if len(out) >= n:
            break
    consumer.close()
    return out
