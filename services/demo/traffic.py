"""Paced simulator traffic into Kafka, with a small share of malformed events (so the DLQ shows)
and, once feeds exist, users reacting to their own feed (closed loop, with attribution).

Organic traffic is whole views (``World.organic``: impression, then click, like and dwell or a skip by
the hidden click model), so users engage from their first events, not only through their feeds."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

import numpy as np
from kafka import KafkaProducer

from core.events import Feed, Interaction, encode
from core.topics import Topics
from models.simulator import World

MALFORMED: tuple[bytes, ...] = (
    b"{this is not json",
    json.dumps({"event_id": "bad", "user_id": "u1", "item_id": "i1", "type": "teleport",
                "timestamp": 1.7e9}).encode(),
    json.dumps({"event_id": "bad", "item_id": "i1", "type": "click", "timestamp": 1.7e9}).encode(),
    json.dumps({"schema_version": 99, "event_id": "bad", "user_id": "u1", "item_id": "i1",
                "type": "click", "timestamp": 1.7e9}).encode(),
)


class TrafficDriver:
    """Sends ``rate`` interactions per second (on average) to the interactions topic.

    ``produced`` counts every record sent to the interactions topic, malformed ones included.
    """

    def __init__(self, world: World, producer: KafkaProducer, topics: Topics, rate: float,
                 malformed_fraction: float = 0.01, feedback_fraction: float = 0.3, seed: int = 0) -> None:
        self.world, self.producer, self.topics = world, producer, topics
        self.rate, self.malformed_fraction = rate, malformed_fraction
        self.feedback_fraction = feedback_fraction
        self.rng = np.random.default_rng(seed)
        self.produced = self.malformed = self.feedback = 0
        self.items_published = self.users_published = 0
        self._carry = 0.0

    def publish_catalog(self, now: float) -> None:
        for item in self.world.item_upserts(now):
            self.producer.send(self.topics.items, encode(item), key=item.item_id.encode())
            self.items_published += 1
        for user in self.world.user_upserts(now):
            self.producer.send(self.topics.users, encode(user), key=user.user_id.encode())
            self.users_published += 1
        self.producer.flush(30)

    def add_items(self, k: int, now: float) -> None:
        for item in self.world.add_items(k, now):
            self.producer.send(self.topics.items, encode(item), key=item.item_id.encode())
            self.items_published += 1

    def tick(self, dt: float, feeds: Mapping[str, Feed]) -> int:
        """Send this tick's share of events; returns how many were sent."""
        self._carry += self.rate * dt
        n, self._carry = int(self._carry), self._carry - int(self._carry)
        now, sent = time.time(), 0
        while sent < n:
            if self.rng.random() < self.malformed_fraction:
                self._send_raw(MALFORMED[int(self.rng.integers(len(MALFORMED)))], b"malformed")
                self.malformed += 1
                sent += 1
            elif feeds and self.rng.random() < self.feedback_fraction:
                sent += self._respond(feeds, now, n - sent)
            else:
                sent += self._organic_one(now, n - sent)
        return sent

    def _respond(self, feeds: Mapping[str, Feed], now: float, budget: int) -> int:
        """One user reacts to its latest feed (impressions + clicks from the truth, attributed)."""
        users = list(feeds)
        feed = feeds[users[int(self.rng.integers(len(users)))]]
        shown = [it for it in feed.items if self.world.has_item(it.item_id)][:10]
        if not shown:
            return self._organic_one(now, budget)
        events = self.world.respond(feed.user_id, [it.item_id for it in shown], now, feed_id=feed.feed_id,
                                    propensities=[it.propensity for it in shown])[: max(1, budget)]
        for ev in events:
            self._send(ev)
        self.feedback += len(events)
        return len(events)

    def _organic_one(self, now: float, budget: int = 1) -> int:
        """One organic view of a random user (cut to ``budget`` events, at least its impression)."""
        user = self.world.user_ids[int(self.rng.integers(len(self.world.user_ids)))]
        events = self.world.organic(user, now)[: max(1, budget)]
        for ev in events:
            self._send(ev)
        return len(events)

    def _send(self, ev: Interaction) -> None:
        self.producer.send(self.topics.interactions, encode(ev), key=ev.user_id.encode())
        self.produced += 1

    def _send_raw(self, value: bytes, key: bytes) -> None:
        self.producer.send(self.topics.interactions, value, key=key)
        self.produced += 1
