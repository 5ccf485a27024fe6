"""Validation of raw records: each kind of bad input gets its dead-letter reason and original bytes."""

from __future__ import annotations

import json

import pytest

from core.events import MAX_EVENT_BYTES, DeadLetter, EventError
from streams.decode import RawRecord, Skew, dead_letter, validate

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
    dl = dead_letter(RawRecord("t.interactions", 2, 41, raw), EventError("unparseable", "x"))
    back = DeadLetter.model_validate_json(dl.model_dump_json())
    assert back.original.encode("latin-1") == raw and (back.partition, back.offset) == (2, 41)
