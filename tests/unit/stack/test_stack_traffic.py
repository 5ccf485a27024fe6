"""TrafficDriver pacing, malformed share and closed-loop feedback (a recording stand-in producer)."""

from __future__ import annotations

import json
from typing import Any

from core.events import EventError, Feed, FeedItem, decode_interaction
from core.topics import Topics
from models.simulator import World, WorldConfig
from services.demo.traffic import TrafficDriver


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None]] = []

    def send(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self.sent.append((topic, value, key))

    def flush(self, timeout: float | None = None) -> None:
        return None


def _driver(malformed: float = 0.0, feedback: float = 0.0) -> tuple[TrafficDriver, Recorder, Topics]:
    world = World(WorldConfig(n_users=20, n_items=50, seed=1))
    rec, topics = Recorder(), Topics("p-")
    producer: Any = rec
    return TrafficDriver(world, producer, topics, rate=100.0, malformed_fraction=malformed,
                         feedback_fraction=feedback, seed=2), rec, topics


def test_catalog_then_paced_valid_events():
    driver, rec, topics = _driver()
    driver.publish_catalog(1.7e9)
    assert driver.items_published == 50 and driver.users_published == 20
    rec.sent.clear()
    sent = sum(driver.tick(0.1, {}) for _ in range(10))  # 1 s at 100/s
    assert sent == driver.produced == len(rec.sent) == 100
    assert {t for t, _, _ in rec.sent} == {topics.interactions}
    events = [decode_interaction(v) for _, v, _ in rec.sent]
    assert all(k == e.user_id.encode() for (_, _, k), e in zip(rec.sent, events, strict=True))


def test_malformed_share_is_counted_and_really_malformed():
    driver, rec, _ = _driver(malformed=0.2)
    for _ in range(20):
        driver.tick(0.1, {})
    assert driver.produced == len(rec.sent) == 200
    bad = 0
    for _, value, _ in rec.sent:
        try:
            decode_interaction(value)
        except EventError:
            bad += 1
    assert bad == driver.malformed and 20 <= bad <= 60


def test_feedback_reacts_to_served_feeds_with_attribution():
    driver, rec, _ = _driver(feedback=1.0)
    items = driver.world.item_ids[:5]
    feed = Feed(feed_id="f1", user_id=driver.world.user_ids[0], version=1, generated_at=1.7e9,
                items=[FeedItem(item_id=i, rank=r, score=1.0, source="popular", propensity=0.5)
                       for r, i in enumerate([*items, "unknown-item"])])
    driver.tick(0.5, {feed.user_id: feed})
    events = [json.loads(v) for _, v, _ in rec.sent]
    assert driver.feedback == len(events) > 0
    assert all(e["feed_id"] == "f1" and e["propensity"] == 0.5 and e["item_id"] in items for e in events)


def test_organic_traffic_engages_not_only_impressions():
    driver, rec, _ = _driver()
    for _ in range(30):
        driver.tick(0.1, {})  # 3 s at 100/s, no feeds: organic views only
    kinds = [json.loads(v)["type"] for _, v, _ in rec.sent]
    assert driver.produced == len(kinds) == 300
    assert kinds.count("click") > 0 and kinds.count("impression") < len(kinds)
