"""The impression record: one per served feed, so clicks can be attributed and IPS/SNIPS computed."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.events import Feed


class Impression(BaseModel):
    """Aligned lists: ``items[k]`` was shown at ``positions[k]`` with ``propensities[k]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: int = 1
    feed_id: str
    user_id: str
    generated_at: float
    origin: str = Field(description="api | publisher")
    model_version: str
    index_version: str
    degraded: bool
    items: list[str]
    positions: list[int]
    propensities: list[float]
    explore: list[bool]
    sources: list[str]
    experiments: dict[str, str] = Field(default_factory=dict, description="experiment -> arm")
    teams: list[str] | None = Field(None, description="interleaving: the arm that placed each item")
    latency_ms: float | None = Field(None, description="time the funnel took to compute the feed")


def impression_of(feed: Feed, origin: str, latency_ms: float | None = None) -> Impression:
    teams = [it.team or "" for it in feed.items] if any(it.team for it in feed.items) else None
    return Impression(feed_id=feed.feed_id, user_id=feed.user_id, generated_at=feed.generated_at,
                      origin=origin, model_version=feed.model_version, index_version=feed.index_version,
                      degraded=feed.degraded, items=[it.item_id for it in feed.items],
                      positions=[it.rank for it in feed.items],
                      propensities=[it.propensity for it in feed.items],
                      explore=[it.explore for it in feed.items], sources=[it.source for it in feed.items],
                      experiments=dict(feed.experiments), teams=teams,
                      latency_ms=None if latency_ms is None else round(latency_ms, 3))


def decode_impression(raw: bytes | str | dict[str, Any]) -> Impression:
    if isinstance(raw, dict):
        return Impression.model_validate(raw)
    return Impression.model_validate_json(raw)
