"""Pure validation of raw input records: decode + skew check, or an EventError saying why (the
dead letter is built by :mod:`iokit.dead_letters`).

A record is first validated straight from its JSON bytes by the same pydantic model (in Rust, about
twice as fast as ``json.loads`` + validation); a record that fails goes through the reference decoder
of ``core.events``, which names the reason. Both accept exactly the same records (unit test)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from core.events import (
    MAX_EVENT_BYTES,
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
MODELS: dict[str, type[BaseModel]] = {INTERACTIONS: Interaction, ITEMS: ItemUpsert, USERS: UserUpsert}


@dataclass(frozen=True)
class RawRecord:
    """One consumed Kafka record (transport-free, so batch logic is testable without a broker)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    timestamp: float = 0.0
    key: bytes | None = None


@dataclass(frozen=True)
class Skew:
    max_future_s: float
    max_past_s: float


def validate(base: str, raw: bytes | None, now: float, skew: Skew) -> Interaction | ItemUpsert | UserUpsert:
    """Decode a record of input topic ``base``; raises EventError (reason, detail) when invalid."""
    if raw is None:
        raise EventError("unparseable", "record has no value (tombstone)")
    record = decode(base, raw)
    check_times(record, now, skew.max_future_s, skew.max_past_s)
    return record  # type: ignore[no-any-return]


def decode(base: str, raw: bytes) -> Any:
    """The record of input topic ``base``, or EventError with the reference decoder's reason."""
    if len(raw) <= MAX_EVENT_BYTES:
        try:
            return MODELS[base].model_validate_json(raw)
        except ValidationError:
            pass
    return DECODERS[base](raw)
