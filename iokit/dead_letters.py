"""Dead letters that always fit under the producer's request limit.

A dead letter carries the reason, the record's coordinates (topic, partition, offset), its key and as
much of its value as fits. Bytes travel as UTF-8 text when that is valid and no longer than base64
once JSON-escaped (``\\u0001`` is 6 bytes for 1), else as base64; either way the size of the dead
letter is known before it is sent, so a 180 KB record of 0x01 bytes or a 5 MB text cannot make the
worker produce a record the producer refuses. The whole record stays in the source topic at its
coordinates.

Shared by the stream worker (a record it cannot decode) and ``streamrec import`` (a bad row of a
file: its coordinates are ``file:<name>``, partition 0, offset = the row number), which sit side by
side in the import layers, so it lives here, below both.
"""

from __future__ import annotations

import base64
import codecs
import json
from dataclasses import dataclass
from typing import Protocol

from aiokafka.record.default_records import DefaultRecordBatchBuilder

from core.events import DeadLetter, EventError, RecordBytes, encode

DEFAULT_MAX_REQUEST_BYTES = 1_000_000  # faust's producer_max_request_size default
MAX_DETAIL_CHARS = 2000
KEY_SHARE = 4  # the original key may use at most 1/KEY_SHARE of the limit (as Kafka key and copy)
_SLACK = 64


class SourceRecord(Protocol):
    """Where a dead-lettered record came from, and its bytes (streams.decode.RawRecord is one)."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def timestamp(self) -> float: ...

    @property
    def key(self) -> bytes | None: ...


@dataclass(frozen=True)
class Outgoing:
    """A dead letter ready to send: its Kafka key (the original key when it fits) and value."""

    record: SourceRecord
    letter: DeadLetter
    key: bytes | None
    value: bytes

    @property
    def reason(self) -> str:
        return self.letter.reason


def record_size(key: bytes | None, value: bytes | None) -> int:
    """What aiokafka's producer compares with ``max_request_size`` (its own estimate)."""
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, []))


def json_len(text: str) -> int:
    """Bytes ``text`` takes inside a JSON string (without the quotes), as pydantic writes it."""
    return len(json.dumps(text, ensure_ascii=False).encode()) - 2


def b64_len(n: int) -> int:
    return 4 * ((n + 2) // 3)


def fit(raw: bytes, budget: int) -> RecordBytes:
    """``raw`` (or its longest prefix) as JSON-string data of at most ``budget`` bytes. Only the first
    ``budget`` bytes are ever looked at: a record of 1 GB costs no more than one of 1 MB."""
    budget = max(0, budget)
    text = _utf8_head(raw, budget)
    if text is not None and json_len(text) <= b64_len(len(text.encode())):
        data = text if json_len(text) <= budget else _text_prefix(text, budget)
        carried = len(data.encode())
        return RecordBytes(encoding="utf-8", data=data, size=len(raw), truncated=carried < len(raw))
    n = min(len(raw), budget // 4 * 3)
    return RecordBytes(encoding="base64", data=base64.b64encode(raw[:n]).decode(), size=len(raw),
                       truncated=n < len(raw))


def _utf8_head(raw: bytes, budget: int) -> str | None:
    """The whole characters in the first ``budget`` bytes (a text char costs at least its UTF-8
    bytes once escaped, so no more can fit), or None when those bytes are not UTF-8."""
    head = raw[:budget]
    try:
        return codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) == len(raw))
    except UnicodeDecodeError:
        return None


def _text_prefix(text: str, budget: int) -> str:
    """The longest prefix whose JSON-escaped length is at most ``budget`` (every char costs >= 1)."""
    lo, hi = 0, min(len(text), budget)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if json_len(text[:mid]) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo]


def build(rec: SourceRecord, err: EventError, max_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> Outgoing:
    """The dead letter of ``rec``, at most ``max_bytes`` as the producer counts it."""
    key_cap = max_bytes // KEY_SHARE
    kafka_key = rec.key if rec.key is not None and len(rec.key) <= key_cap else None
    shell = DeadLetter(source_topic=rec.topic, partition=rec.partition, offset=rec.offset,
                       timestamp=rec.timestamp or None, reason=err.reason,
                       detail=err.detail[:MAX_DETAIL_CHARS], key=_placeholder(rec.key),
                       original=_placeholder(rec.value))
    room = max_bytes - record_size(kafka_key, encode(shell)) - _SLACK
    for _ in range(3):
        letter = _fill(shell, rec, room, key_cap)
        value = encode(letter)
        over = record_size(kafka_key, value) - max_bytes
        if over <= 0:
            break
        room -= over + _SLACK  # escaping differed from our estimate: shrink and refit
    # Only a limit smaller than the envelope itself (~15 KB) leaves it too big: the producer then
    # refuses it for good, and the record is skipped and counted like any refused letter.
    return Outgoing(rec, letter, kafka_key, value)


def _placeholder(raw: bytes | None) -> RecordBytes | None:
    """The longest envelope a RecordBytes of ``raw`` can have with empty data."""
    return None if raw is None else RecordBytes(encoding="base64", data="", size=len(raw), truncated=False)


def _fill(shell: DeadLetter, rec: SourceRecord, room: int, key_cap: int) -> DeadLetter:
    key = None if rec.key is None else fit(rec.key, min(max(0, room), key_cap))
    room -= json_len(key.data) if key is not None else 0
    original = None if rec.value is None else fit(rec.value, room)
    return shell.model_copy(update={"key": key, "original": original})
