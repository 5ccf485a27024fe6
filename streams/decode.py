"""Pure validation of raw input records: decode + skew check, or a DeadLetter saying why."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.events import (
    DeadLetter,
    EventError,
    Interaction,
    ItemUpsert,
    UserUpsert,
    check_times,
    decode_interaction,
    decode_item,
    decode_user,
)
from core.topics import INTERACTIONS, ITEMS, USERS

DECODERS: dict[str, Callable[[bytes], Any]] = {
    INTERACTIONS: decode_interaction, ITEMS: decode_item, USERS: decode_user,
}


@dataclass(frozen=True)
class RawRecord:
    """One consumed Kafka record (transport-free, so batch logic is testable without a broker)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    timestamp: float = 0.0


@dataclass(frozen=True)
class Skew:
    max_future_s: float
    max_past_s: float


def validate(base: str, raw: bytes | None, now: float, skew: Skew) -> Interaction | ItemUpsert | UserUpsert:
    """Decode a record of input topic ``base``; raises EventError (reason, detail) when invalid."""
    if raw is None:
        raise EventError("unparseable", "record has no value (tombstone)")
    record = DECODERS[base](raw)
    check_times(record, now, skew.max_future_s, skew.max_past_s)
    return record  # type: ignore[no-any-return]


def dead_letter(rec: RawRecord, err: EventError) -> DeadLetter:
    original = (rec.value or b"").decode("latin-1")
    return DeadLetter(source_topic=rec.topic, reason=err.reason, detail=err.detail[:2000],
                      original=original, partition=rec.partition, offset=rec.offset)
