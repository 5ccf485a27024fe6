"""streamrec.client's records are the platform's: same schema files (one source), same fields, same
verdicts. A record the client accepts, the worker decodes to the same values; one it refuses, the
worker dead-letters too, and the client names the field. Keys and topics are the platform's."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import pytest
from kafka.partitioner.default import DefaultPartitioner
from streamrec.client import Feed, Interaction, InvalidEvent, ItemUpsert, UserUpsert, schema
from streamrec.client import consumer as client_consumer
from streamrec.client import schemas as client_schemas
from streamrec.client.events import FeedItem, fields_of, schema_fields

from core import topics
from core.events import (
    MAX_EVENT_BYTES,
    EventError,
    decode_interaction,
    decode_item,
    decode_user,
    json_schemas,
)
from core.events import (
    FeedItem as CoreFeedItem,
)
from services.cli.schemas import SCHEMA_DIR


def test_the_client_reads_the_platforms_schema_files_not_a_copy():
    assert client_schemas.schema_dir().resolve() == SCHEMA_DIR.resolve()
    for name, generated in json_schemas().items():
        assert schema(name) == json.loads(json.dumps(generated)), name  # the files are the models'


@pytest.mark.parametrize(("kind", "name"), [(Interaction, "interaction"), (ItemUpsert, "item_upsert"),
                                            (UserUpsert, "user_upsert")])
def test_what_the_client_sends_has_exactly_the_schemas_fields(kind: Any, name: str):
    assert fields_of(kind) == schema_fields(name)


def test_what_the_client_reads_has_every_field_of_the_platforms_feed():
    """A field the platform adds to feeds must be added to the client's Feed/FeedItem (an older client
    keeps unknown fields in ``extra`` rather than failing)."""
    assert schema_fields("feed") <= fields_of(Feed)
    assert set(CoreFeedItem.model_fields) <= fields_of(FeedItem)
    feed = Feed.parse({"feed_id": "f", "user_id": "u", "version": 1, "generated_at": 1.0, "new": [1],
                       "items": [{"item_id": "i", "rank": 0, "score": 1.0, "source": "s", "later": 2}]})
    assert feed.extra == {"new": [1]} and feed.items[0].extra == {"later": 2}
    with pytest.raises(InvalidEvent):
        Feed.parse({"feed_id": "f", "user_id": "u", "version": -1, "generated_at": 1.0, "items": []})


def test_limits_topics_and_keys_match_the_platform():
    assert client_schemas.MAX_EVENT_BYTES == MAX_EVENT_BYTES
    assert (Interaction.topic, ItemUpsert.topic, UserUpsert.topic) == (topics.INTERACTIONS, topics.ITEMS,
                                                                       topics.USERS)
    assert client_consumer.FEEDS == topics.FEEDS


def test_valid_records_decode_identically_on_the_platform():
    now = time.time()
    ev = Interaction(user_id="u1", item_id="i1", type="dwell", value=42.0, timestamp=now,
                     context={"device": "ios"}, feed_id="f1", position=3, propensity=0.5)
    got = decode_interaction(ev.encode())
    assert (got.event_id, got.user_id, got.type, got.value) == (ev.event_id, "u1", "dwell", 42.0)
    assert (got.context, got.feed_id, got.position, got.propensity) == ({"device": "ios"}, "f1", 3, 0.5)
    item = ItemUpsert(item_id="i1", created_at=now, categories=["a"], attributes={"p": 1.5, "new": True})
    assert decode_item(item.encode()).attributes == {"p": 1.5, "new": True}
    assert decode_user(UserUpsert(user_id="u1", segment="vip").encode()).segment == "vip"
    assert (ev.key, item.key, UserUpsert(user_id="u9").key) == ("u1", "i1", "u9")


def _platform_refuses(decode: Any, record: dict[str, Any]) -> bool:
    try:
        decode(json.dumps(record).encode())
    except EventError:
        return True
    return False


BAD: list[tuple[Any, dict[str, Any], str, str]] = [
    (Interaction, {"user_id": "u", "item_id": "i", "type": "teleport"}, "type", "invalid_field"),
    (Interaction, {"user_id": "", "item_id": "i", "type": "click"}, "user_id", "invalid_field"),
    (Interaction, {"user_id": "u", "item_id": "i", "type": "dwell", "value": -1.0}, "value", "invalid_field"),
    (Interaction, {"user_id": "u", "item_id": "i", "type": "click", "propensity": 1.5}, "propensity",
     "invalid_field"),
    (Interaction, {"user_id": "u", "item_id": "i", "type": "click", "value": math.nan}, "value",
     "non_finite"),
    (Interaction, {"user_id": "u", "item_id": "i", "type": "click", "context": {"d": 1}}, "context.d",
     "invalid_field"),
    (ItemUpsert, {"item_id": "i", "created_at": -1.0}, "created_at", "invalid_field"),
    (ItemUpsert, {"item_id": "i", "created_at": math.inf}, "created_at", "non_finite"),
    (ItemUpsert, {"item_id": "i", "created_at": 1.0, "attributes": {"x": [1]}}, "attributes.x",
     "invalid_field"),
    (ItemUpsert, {"item_id": "i", "created_at": 1.0, "text": "x" * MAX_EVENT_BYTES}, "", "oversized"),
    (UserUpsert, {"user_id": "u" * 257}, "user_id", "invalid_field"),
    (UserUpsert, {"user_id": "u", "attributes": {"s": -math.inf}}, "attributes.s", "non_finite"),
]


@pytest.mark.parametrize(("kind", "fields", "field", "reason"), BAD)
def test_what_the_client_refuses_the_platform_refuses(kind: Any, fields: dict[str, Any], field: str,
                                                      reason: str):
    record = kind(**fields)
    with pytest.raises(InvalidEvent) as caught:
        record.encode()
    assert (caught.value.field, caught.value.reason) == (field, reason), caught.value
    decode = {Interaction: decode_interaction, ItemUpsert: decode_item, UserUpsert: decode_user}[kind]
    assert _platform_refuses(decode, record.record())


def test_missing_and_unknown_fields_are_named():
    with pytest.raises(InvalidEvent) as caught:
        client_schemas.validate("interaction", {"user_id": "u", "item_id": "i", "type": "click"})
    assert caught.value.reason == "missing_field" and caught.value.field in {"event_id", "timestamp"}
    with pytest.raises(InvalidEvent) as caught:
        client_schemas.validate("user_upsert", {"user_id": "u", "nick": "x"})
    assert caught.value.reason == "unknown_field"


def test_the_consumer_picks_the_partition_the_publisher_writes_to():
    class Cluster:
        def topics(self) -> set[str]:
            return {"feeds"}

        def partitions_for_topic(self, topic: str) -> set[int]:
            return set(range(6))

        def available_partitions_for_topic(self, topic: str) -> set[int]:
            return set(range(6))

    kafka = DefaultPartitioner()
    for user in ("alice", "bob", "u17", "ü-ñ", ""):
        expected = kafka.partition("feeds", user, user.encode(), None, None, Cluster())
        assert client_consumer.partition_of(user, 6) == expected
