"""PUT /v1/items[/{id}] and /v1/users[/{id}] on the real broker: a valid record lands on its topic
keyed by its id, as the worker decodes it; a refused request writes nothing."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient, NewTopic

from core.events import decode_item, decode_user
from core.settings import Settings
from core.topics import Topics
from feature_store.online.memory_state import MemoryOnline
from funnel.pipeline import Pipeline
from services.api.app import create_app


def _records(settings: Settings, topic: str, expect: int) -> list[tuple[bytes, bytes]]:
    consumer = KafkaConsumer(topic, bootstrap_servers=settings.kafka.bootstrap_servers,
                             auto_offset_reset="earliest")
    got: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + 20
    while len(got) < expect and time.monotonic() < deadline:
        got += [(r.key, r.value) for rs in consumer.poll(500).values() for r in rs]
    if len(got) == expect:  # anything more would arrive within a last short poll
        got += [(r.key, r.value) for rs in consumer.poll(1000).values() for r in rs]
    consumer.close()
    return got


def test_items_and_users_are_written_keyed_by_id(settings: Settings):
    topics = Topics(settings.kafka.topic_prefix)
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    admin.create_topics([NewTopic(t, 2, 1) for t in topics.all()])
    admin.close()
    app = create_app(settings, Pipeline(settings, MemoryOnline(settings)))
    now = time.time()
    with TestClient(app) as client:
        assert app.state.ctx.producer.wait(30)
        assert client.put("/v1/items/i1", json={"title": "One", "created_at": now - 10}).status_code == 202
        batch = [{"item_id": f"b{k}", "categories": ["c"], "created_at": now} for k in range(3)]
        assert client.put("/v1/items", json=batch).json() == {"accepted": 3}
        assert client.put("/v1/items", json=[*batch, {"item_id": "bad"}]).status_code == 422
        user = {"segment": "new", "attributes": {"age": 31}}
        assert client.put("/v1/users/u1", json=user).status_code == 202
        assert client.put("/v1/users", json=[{"user_id": "u2"}]).json() == {"accepted": 1}
    items = _records(settings, topics.items, 4)
    assert sorted((k.decode(), decode_item(v).item_id) for k, v in items) == [
        ("b0", "b0"), ("b1", "b1"), ("b2", "b2"), ("i1", "i1")]
    assert decode_item(dict(items)[b"i1"]).title == "One"
    users = {k.decode(): decode_user(v) for k, v in _records(settings, topics.users, 2)}
    assert set(users) == {"u1", "u2"} and users["u1"].segment == "new"
    assert users["u1"].attributes == {"age": 31}
