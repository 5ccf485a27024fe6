"""Typed records: what an application sends (interactions, items, users) and the feeds it reads.

The fields mirror the platform's schemas (a test holds them equal); validation is the schemas' own,
see :mod:`streamrec.client.schemas`. Each input record knows its topic and its Kafka key (the platform
partitions interactions and users by user id, items by item id).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Literal

from streamrec.client.schemas import schema, validate

InteractionType = Literal["impression", "click", "like", "purchase", "skip", "dwell", "add_to_cart",
                          "share", "hide"]
Attribute = str | float | int | bool


def _event_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, kw_only=True)
class _Input:
    topic: ClassVar[str]
    schema_name: ClassVar[str]

    def record(self) -> dict[str, Any]:
        """The JSON object the platform reads (``schema_version`` included)."""
        return {"schema_version": 1, **asdict(self)}

    def encode(self) -> bytes:
        """The validated wire bytes; raises InvalidEvent naming the field the platform would refuse."""
        return validate(self.schema_name, self.record())

    @property
    def key(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class Interaction(_Input):
    """One user action on one item. ``timestamp`` is unix seconds; ``event_id`` makes a resend
    idempotent (the platform applies each event id once), so keep it when you retry."""

    topic: ClassVar[str] = "interactions"
    schema_name: ClassVar[str] = "interaction"
    user_id: str
    item_id: str
    type: InteractionType
    value: float = 1.0
    timestamp: float = field(default_factory=time.time)
    event_id: str = field(default_factory=_event_id)
    context: dict[str, str] = field(default_factory=dict)
    feed_id: str | None = None
    position: int | None = None
    propensity: float | None = None

    @property
    def key(self) -> str:
        return self.user_id


@dataclass(frozen=True, kw_only=True)
class ItemUpsert(_Input):
    """An item of the catalog, created or replaced. ``created_at`` is unix seconds."""

    topic: ClassVar[str] = "items"
    schema_name: ClassVar[str] = "item_upsert"
    item_id: str
    created_at: float
    title: str = ""
    text: str = ""
    categories: list[str] = field(default_factory=list)
    attributes: dict[str, Attribute] = field(default_factory=dict)
    active: bool = True
    timestamp: float = field(default_factory=time.time)

    @property
    def key(self) -> str:
        return self.item_id


@dataclass(frozen=True, kw_only=True)
class UserUpsert(_Input):
    """A user's profile, created or replaced."""

    topic: ClassVar[str] = "users"
    schema_name: ClassVar[str] = "user_upsert"
    user_id: str
    attributes: dict[str, Attribute] = field(default_factory=dict)
    segment: str | None = None
    timestamp: float = field(default_factory=time.time)

    @property
    def key(self) -> str:
        return self.user_id


Event = Interaction | ItemUpsert | UserUpsert


@dataclass(frozen=True)
class FeedItem:
    item_id: str
    rank: int
    score: float
    source: str
    explore: bool = False
    propensity: float = 1.0
    scores: dict[str, float] = field(default_factory=dict)
    rules: list[str] = field(default_factory=list)
    team: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # fields of a newer platform, as read

    @classmethod
    def parse(cls, data: dict[str, Any]) -> FeedItem:
        return cls(**_known(cls, data))


@dataclass(frozen=True)
class Feed:
    """A ranked feed for one user, as the API answers and the ``feeds`` topic carries it."""

    feed_id: str
    user_id: str
    version: int
    generated_at: float
    items: list[FeedItem]
    model_version: str = "none"
    index_version: str = "none"
    degraded: bool = False
    trigger: str = "request"
    trigger_event_ts: float | None = None
    experiments: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # fields of a newer platform, as read

    @property
    def item_ids(self) -> list[str]:
        return [it.item_id for it in self.items]

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Feed:
        """A feed from its JSON object, validated against the platform's feed schema (fields the
        schema does not know yet are kept in ``extra``)."""
        validate("feed", data, allow_extra=True)
        return cls(**{**_known(cls, data), "items": [FeedItem.parse(it) for it in data["items"]]})


def _known(cls: type[Feed] | type[FeedItem], data: dict[str, Any]) -> dict[str, Any]:
    names = fields_of(cls)
    extra = {k: v for k, v in data.items() if k not in names and k != "schema_version"}
    return {**{k: v for k, v in data.items() if k in names}, "extra": extra}


def fields_of(kind: type[_Input] | type[Feed] | type[FeedItem]) -> set[str]:
    """The record fields a typed class carries (the schema's properties, ``schema_version`` aside)."""
    return {f.name for f in fields(kind)} - {"extra"}


def schema_fields(name: str) -> set[str]:
    return set(schema(name)["properties"]) - {"schema_version"}
