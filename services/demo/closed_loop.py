"""The closed loop of ``streamrec bench loop``: simulated users see the feeds the live stack publishes on
the feeds topic and respond to them by the simulator's hidden click model, through Kafka.

Users arrive over the run (a share at the start, the rest evenly until the end, so there are cold users
throughout); an arriving user's upsert goes to the users topic. Each visit picks an arrived user at
random: with a feed from the topic, the user is shown its first ``shown`` items and reacts
(``World.respond``: impressions, clicks, likes, dwell, skips with feed_id, position and the logged
propensity); without one yet, the user browses organically (``World.organic``). Organic views of
arrived users run beside the visits, and new items are upserted at a steady rate. Every visit to a feed
is scored by :class:`services.demo.truth.Truth` before the user reacts.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from kafka import KafkaProducer

from core.events import Feed, Interaction, InteractionType, UserUpsert, decode_feed, encode
from core.settings import Settings
from core.topics import Topics
from feature_store.online.effects import engaged
from models.simulator import World
from services.demo.kafka_io import FeedRecord, TopicWatcher, record_ts
from services.demo.truth import Moment, Truth


@dataclass(frozen=True)
class LoopOptions:
    users: int = 2000
    items: int = 5000
    duration_s: float = 900.0
    visits_per_s: float = 8.0
    organic_per_s: float = 16.0
    new_items_per_min: float = 20.0
    initial_users: float = 0.5
    shown: int = 10
    window_s: float = 30.0
    final_s: float = 120.0
    young_s: float = 600.0
    cold_max: int = 5
    seed: int = 0


@dataclass
class SimUser:
    arrives: float  # seconds after the traffic started
    seen: set[str] = field(default_factory=set)
    engaged: int = 0
    feed: Feed | None = None
    feed_received: float = 0.0


@dataclass(frozen=True)
class Slot:
    """One shown slot: when, the item's candidate source, its true click probability, its position in
    the shown items and the score the feed gave it (the funnel's combined heads)."""

    t: float
    source: str
    p: float
    position: int
    score: float


@dataclass
class NewItem:
    upserted: float  # wall time of the upsert
    first_feed: float | None = None  # topic time of the first feed record that carried it
    first_source: str = ""
    first_rank: int = -1
    first_shown: float | None = None  # wall time a simulated user was first shown it


class FeedIntake(TopicWatcher):
    """Every feed record on the topic, queued for the loop's thread (which alone touches the world)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        super().__init__(settings, topic)
        self.queue: collections.deque[FeedRecord] = collections.deque()
        self.bad = 0

    def handle(self, rec: Any) -> None:
        try:
            self.queue.append(FeedRecord(decode_feed(rec.value), record_ts(rec)))
        except Exception:  # noqa: BLE001 - counted: an undecodable feed is a platform bug to report
            self.bad += 1


@dataclass
class Published:
    """Feeds as they come off the topic: when, how late after their trigger event, which models."""

    times: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    versions: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    # ("model" | "index", version) -> topic time of the first feed that carried it
    first_version: dict[tuple[str, str], float] = field(default_factory=dict)
    degraded: int = 0


class ClosedLoop:
    """Drives the users; call :meth:`start` once, then :meth:`tick` often, from one thread."""

    def __init__(self, world: World, producer: KafkaProducer, topics: Topics, opts: LoopOptions) -> None:
        self.world, self.producer, self.topics, self.opts = world, producer, topics, opts
        self.truth = Truth(world, opts.young_s)
        self.rng = np.random.default_rng([opts.seed, 11])
        self.users = self._arrivals()
        self._due = sorted((s.arrives, u) for u, s in self.users.items())
        self._next = 0  # the next arrival in _due
        self.active: list[str] = []
        self.moments: list[Moment] = []
        self.new_items: dict[str, NewItem] = {}
        self.published = Published()
        self.feed_ages_s: list[float] = []
        self.slots: list[Slot] = []  # every shown slot
        self.produced = self.visits = self.organic = self.items_published = 0
        self.started = 0.0
        self._carry = np.zeros(3)  # visits, organic views, new items
        self._upserts: dict[str, UserUpsert] = {}

    def _arrivals(self) -> dict[str, SimUser]:
        n, o = len(self.world.user_ids), self.opts
        first = int(round(n * o.initial_users))
        later = np.sort(self.rng.uniform(0.0, o.duration_s, n - first))
        times = np.concatenate([np.zeros(first), later])
        order = self.rng.permutation(n)
        return {self.world.user_ids[int(j)]: SimUser(float(times[k])) for k, j in enumerate(order)}

    # ---- set-up --------------------------------------------------------------------------------
    def publish_catalog(self, now: float) -> int:
        items = self.world.item_upserts(now)
        for item in items:
            self.producer.send(self.topics.items, encode(item), key=item.item_id.encode())
        self.truth.add((it.item_id, it.created_at) for it in items)
        self.items_published += len(items)
        self._upserts = {u.user_id: u for u in self.world.user_upserts(now)}
        self.producer.flush(60)
        return len(items)

    def start(self, now: float) -> None:
        self.started = now

    # ---- the loop ------------------------------------------------------------------------------
    def tick(self, now: float, dt: float, feeds: collections.deque[FeedRecord]) -> None:
        t = now - self.started
        self._drain(feeds, now)
        self._arrive(t, now)
        o = self.opts
        self._carry += dt * np.array([o.visits_per_s, o.organic_per_s, o.new_items_per_min / 60.0])
        n_visits, n_organic, n_items = (int(c) for c in self._carry)
        self._carry -= np.array([n_visits, n_organic, n_items])
        if n_items:
            self._add_items(n_items, now)
        if not self.active:
            return
        for _ in range(n_visits):
            self._visit(self._pick(), now, t)
        for _ in range(n_organic):
            self._organic(self._pick(), now)

    def _pick(self) -> str:
        return self.active[int(self.rng.integers(len(self.active)))]

    def _arrive(self, t: float, now: float) -> None:
        while self._next < len(self._due) and self._due[self._next][0] <= t:
            user_id = self._due[self._next][1]
            self._next += 1
            up = self._upserts[user_id].model_copy(update={"timestamp": now})
            self.producer.send(self.topics.users, encode(up), key=user_id.encode())
            self.active.append(user_id)

    def _add_items(self, k: int, now: float) -> None:
        for item in self.world.add_items(k, now):
            self.producer.send(self.topics.items, encode(item), key=item.item_id.encode())
            self.new_items[item.item_id] = NewItem(now)
            self.truth.add([(item.item_id, now)])
            self.items_published += 1

    def _visit(self, user_id: str, now: float, t: float) -> None:
        user = self.users[user_id]
        if user.feed is None:
            self._organic(user_id, now)
            return
        feed = user.feed
        shown = [it for it in feed.items if self.world.has_item(it.item_id)][: self.opts.shown]
        ids = [it.item_id for it in shown]
        moment = self.truth.moment(user_id, ids, now, t, user.seen, user.engaged <= self.opts.cold_max,
                                   (feed.model_version, feed.index_version))
        if moment is None:
            self._organic(user_id, now)
            return
        self.moments.append(moment)
        self.visits += 1
        probs = self.world.click_probs(user_id, ids)
        self.slots.extend(Slot(t, it.source, float(p), pos, it.score)
                          for pos, (it, p) in enumerate(zip(shown, probs, strict=True)))
        self.feed_ages_s.append(now - user.feed_received)
        for iid in ids:
            item = self.new_items.get(iid)
            if item is not None and item.first_shown is None:
                item.first_shown = now
        self._send(self.world.respond(user_id, ids, now, feed_id=feed.feed_id,
                                      propensities=[it.propensity for it in shown]))

    def _organic(self, user_id: str, now: float) -> None:
        self.organic += 1
        self._send(self.world.organic(user_id, now))

    def _send(self, events: list[Interaction]) -> None:
        for ev in events:
            self.producer.send(self.topics.interactions, encode(ev), key=ev.user_id.encode())
            user = self.users[ev.user_id]
            if ev.type is not InteractionType.IMPRESSION:
                user.seen.add(ev.item_id)
            user.engaged += int(engaged(ev))
        self.produced += len(events)

    # ---- feeds ---------------------------------------------------------------------------------
    def _drain(self, feeds: collections.deque[FeedRecord], now: float) -> None:
        while feeds:
            rec = feeds.popleft()
            self._record(rec)
            user = self.users.get(rec.feed.user_id)
            if user is not None and not rec.feed.degraded:
                user.feed, user.feed_received = rec.feed, now

    def _record(self, rec: FeedRecord) -> None:
        feed, pub = rec.feed, self.published
        pub.times.append(rec.topic_ts)
        pub.degraded += int(feed.degraded)
        if rec.latency_ms is not None:
            pub.latencies_ms.append(rec.latency_ms)
        pub.versions[(feed.model_version, feed.index_version)] += 1
        pub.first_version.setdefault(("model", feed.model_version), rec.topic_ts)
        pub.first_version.setdefault(("index", feed.index_version), rec.topic_ts)
        for it in feed.items:
            item = self.new_items.get(it.item_id)
            if item is not None and item.first_feed is None:
                item.first_feed, item.first_source, item.first_rank = rec.topic_ts, it.source, it.rank


def wait_until(pred: Any, timeout_s: float, step_s: float = 0.3) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step_s)
    return bool(pred())
