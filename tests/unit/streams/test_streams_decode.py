"""Validation of raw records: each kind of bad input gets its dead-letter reason and original bytes."""

from __future__ import annotations

import json

import pytest

from core.events import MAX_EVENT_BYTES, DeadLetter, EventError
from iokit.dead_letters import build
from streams.decode import RawRecord, Skew, validate

NOW = 1_700_000_000.0
SKEW = Skew(max_future_s=60.0, max_past_s=3600.0)


def good(**over: object) -> bytes:
    d = {"event_id": "e", "user_id": "u", "item_id": "i", "type": "click", "timestamp": NOW, **over}
    return json.dumps(d).encode()


@pytest.mark.parametrize(("raw", "reason"), [
    (b"{not json", "unparseable"),
    (b"\xff\xfe", "unparseable"),
    (None, "unparseable"),
    (json.dumps({"user_id": "u"}).encode(), "missing_field"),
    (good(type="teleport"), "unknown_type"),
    (good(timestamp=NOW + 3600), "future_timestamp"),
    (good(timestamp=NOW - 7200), "stale_timestamp"),
    (good(context={"pad": "x" * MAX_EVENT_BYTES}), "oversized"),
])
def test_bad_records_raise_with_reason(raw: bytes | None, reason: str) -> None:
    with pytest.raises(EventError) as exc:
        validate("interactions", raw, NOW, SKEW)
    assert exc.value.reason == reason


def test_valid_record_passes_and_dead_letter_keeps_original_bytes() -> None:
    assert validate("interactions", good(), NOW, SKEW).item_id == "i"
    raw = b"\xff\x00binary"
    out = build(RawRecord("t.interactions", 2, 41, raw, key=b"u7"), EventError("unparseable", "x"))
    back = DeadLetter.model_validate_json(out.value)
    assert back.original is not None and back.original.raw() == raw and not back.original.truncated
    assert (back.source_topic, back.partition, back.offset) == ("t.interactions", 2, 41)
    assert out.key == b"u7" and back.key is not None and back.key.raw() == b"u7"
