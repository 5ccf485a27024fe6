"""Input records refuse non-finite numbers (naming the field), negative interaction values, and an
item ``created_at`` beyond the future skew bound; the worker's validate applies the same bounds."""

from __future__ import annotations

import json

import pytest

from core.events import EventError, ItemUpsert, check_times, decode_interaction, decode_item, decode_user
from streams.decode import Skew, validate

NOW = 1.8e9
SKEW = Skew(max_future_s=300.0, max_past_s=30 * 86400.0)


def _raw(record: dict[str, object], literal: str) -> bytes:
    """``record`` as JSON with the number 0.5 spelled as ``literal`` (NaN, Infinity, ...)."""
    return json.dumps(record).replace("0.5", literal).encode()


EVENT = {"event_id": "e", "user_id": "u", "item_id": "i", "type": "dwell", "timestamp": NOW}


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
@pytest.mark.parametrize(("decode", "record", "field"), [
    (decode_interaction, {**EVENT, "value": 0.5}, "value"),
    (decode_interaction, {**EVENT, "timestamp": 0.5}, "timestamp"),
    (decode_item, {"item_id": "i", "created_at": 0.5}, "created_at"),
    (decode_item, {"item_id": "i", "created_at": NOW, "attributes": {"price": 0.5}}, "attributes.price"),
    (decode_user, {"user_id": "u", "attributes": {"age": 0.5}}, "attributes.age"),
])
def test_non_finite_numbers_are_refused_naming_the_field(decode, record, field, literal):
    with pytest.raises(EventError) as err:
        decode(_raw(record, literal))
    assert err.value.reason == "non_finite" and err.value.detail.startswith(field)


def test_negative_value_is_refused_and_zero_is_fine():
    with pytest.raises(EventError, match="value"):
        decode_interaction(json.dumps({**EVENT, "value": -1.0}).encode())
    assert decode_interaction(json.dumps({**EVENT, "value": 0.0}).encode()).value == 0.0


def test_created_at_beyond_the_skew_is_refused_and_old_items_are_fine():
    future = ItemUpsert(item_id="i", created_at=NOW + 301, timestamp=NOW)
    with pytest.raises(EventError) as err:
        check_times(future, NOW, SKEW.max_future_s, SKEW.max_past_s)
    assert err.value.reason == "future_created_at" and "created_at" in err.value.detail
    ahead_within = ItemUpsert(item_id="i", created_at=NOW + 299, timestamp=NOW)
    ancient = ItemUpsert(item_id="i", created_at=NOW - 20 * 365 * 86400, timestamp=NOW)
    for item in (ahead_within, ancient):
        check_times(item, NOW, SKEW.max_future_s, SKEW.max_past_s)


def test_worker_validate_applies_the_created_at_bound():
    raw = json.dumps({"item_id": "i", "created_at": NOW + 10 * 365 * 86400, "timestamp": NOW}).encode()
    with pytest.raises(EventError) as err:
        validate("items", raw, NOW, SKEW)
    assert err.value.reason == "future_created_at"
    ok = json.dumps({"item_id": "i", "created_at": NOW - 86400, "timestamp": NOW}).encode()
    assert isinstance(validate("items", ok, NOW, SKEW), ItemUpsert)
