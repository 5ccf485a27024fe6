"""Dead letters always fit under the producer's request limit, whatever the record: a payload that
JSON-escaping would blow up 6x, a 5 MB text, invalid UTF-8, a huge key, a tombstone."""

from __future__ import annotations

import json
import random

import pytest

from core.events import DeadLetter, EventError
from iokit.dead_letters import KEY_SHARE, b64_len, build, fit, json_len, record_size
from streams.decode import RawRecord

LIMIT = 1_000_000
ERR = EventError("oversized", "payload is too big")


def letter_of(value: bytes | None, key: bytes | None = b"u1",
              limit: int = LIMIT) -> tuple[DeadLetter, bytes | None]:
    out = build(RawRecord("p-interactions", 3, 1234, value, 1.7e9, key), ERR, limit)
    assert record_size(out.key, out.value) <= limit
    back = DeadLetter.model_validate_json(out.value)
    assert back == out.letter
    assert (back.source_topic, back.partition, back.offset, back.reason) == ("p-interactions", 3, 1234,
                                                                             "oversized")
    return back, out.key


def test_control_bytes_travel_as_base64_whole() -> None:
    raw = b"\x01" * 180_000  # escaped as \u0001 this would be 1.08 MB of JSON
    back, key = letter_of(raw)
    assert back.original is not None and back.original.encoding == "base64"
    assert back.original.raw() == raw and not back.original.truncated and back.original.size == len(raw)
    assert key == b"u1"


def test_five_megabytes_of_text_are_cut_to_fit_and_say_so() -> None:
    raw = ("x" * 99 + "\n").encode() * 52_429  # ~5 MB
    back, _ = letter_of(raw)
    orig = back.original
    assert orig is not None and orig.encoding == "utf-8" and orig.truncated and orig.size == len(raw)
    assert raw.startswith(orig.raw()) and len(orig.raw()) > 0.9 * LIMIT


def test_invalid_utf8_is_cut_as_base64_prefix() -> None:
    raw = b"\xff" + random.Random(1).randbytes(3_000_000)
    back, _ = letter_of(raw)
    orig = back.original
    assert orig is not None and orig.encoding == "base64" and orig.truncated
    assert raw.startswith(orig.raw()) and len(orig.raw()) > 0.7 * LIMIT


def test_quote_heavy_json_stays_text_and_multibyte_text_is_cut_on_a_character() -> None:
    raw = json.dumps({"k": ['"\\"'] * 1000}).encode()
    back, _ = letter_of(raw)
    assert back.original is not None and back.original.raw() == raw
    text = ("héllo wörld ✓ " * 200_000).encode()
    back, _ = letter_of(text)
    assert back.original is not None and back.original.encoding == "utf-8"
    assert text.startswith(back.original.raw())


def test_huge_key_is_not_the_kafka_key_but_its_start_is_in_the_letter() -> None:
    key = b"k" * LIMIT
    back, kafka_key = letter_of(b"{}", key=key)
    assert kafka_key is None
    assert back.key is not None and back.key.truncated and back.key.size == LIMIT
    assert len(back.key.raw()) <= LIMIT // KEY_SHARE and key.startswith(back.key.raw())
    assert back.original is not None and back.original.raw() == b"{}"


def test_tombstone_and_keyless_records() -> None:
    back, kafka_key = letter_of(None, key=None)
    assert back.original is None and back.key is None and kafka_key is None


@pytest.mark.parametrize("limit", [2_000, 50_000, LIMIT])
def test_random_records_always_fit(limit: int) -> None:
    rng = random.Random(limit)
    alphabet = [b"\x00", b"\x01", b"a", b'"', b"\\", "é".encode(), b"\xff", b"\n"]
    for _ in range(12):
        n = rng.choice([0, 10, 1_000, limit // 2, limit, 3 * limit])
        raw = b"".join(rng.choices(alphabet, k=min(n, 20_000))) * max(1, n // 20_000)
        key = b"".join(rng.choices(alphabet, k=rng.choice([0, 5, min(limit, 20_000)])))
        back, _ = letter_of(raw, key=key, limit=limit)
        assert back.original is not None and raw.startswith(back.original.raw())


def test_fit_budget_is_exact_for_base64_and_text() -> None:
    assert b64_len(3) == 4 and b64_len(4) == 8
    assert len(fit(b"\x01" * 30, 40).data) <= 40
    part = fit(b'a"b' * 100, 31)
    assert json_len(part.data) <= 31 and part.truncated and part.encoding == "utf-8"


def test_only_the_head_that_can_fit_is_read() -> None:
    raw = b"a" * 3_000_000 + b"\xff\xfe"  # invalid UTF-8 only far beyond what can fit
    back, _ = letter_of(raw)
    assert back.original is not None and back.original.encoding == "utf-8" and back.original.truncated
    cut = "é".encode() * 10 + b"\xff"
    part = fit(cut, 5)  # 5 bytes hold two whole characters; the third is cut, not split
    assert part.encoding == "utf-8" and part.raw() == "éé".encode() and part.truncated


def test_a_limit_below_the_envelope_still_builds_a_letter_the_producer_will_refuse() -> None:
    out = build(RawRecord("p-interactions", 0, 1, b"x" * 100, key=b"k"), EventError("r", "d" * 2000), 500)
    assert record_size(out.key, out.value) > 500  # sent anyway: MessageSizeTooLarge -> skipped, counted
    assert out.letter.original is not None and out.letter.original.data == ""
