"""What ``streamrec bench serve`` runs against: a catalogue and users written through the real write path,
the API's command and settings taken from the Kubernetes Deployment, and event -> feed on the topic.

* :func:`seed` produces the catalogue (item upserts), the users (user upserts) and their Zipf-popular
  clicks to Kafka, and waits until the stream worker applied them (its durable counters in Redis):
  the online state and Feast's rows are the worker's own effects and pushes, as in production.
* :func:`deployment` reads the API Deployment (``deploy/k8s/base/api.yaml``) and the settings
  ConfigMap (``settings.env``): the bench refuses to run the API with another command, and applies the
  same ``STREAMREC_API__*`` settings (the listening address aside, which the local stack assigns).
* :class:`EventToFeed` sends clicks at a fixed rate, at most one in flight per user (so each feed on the
  topic answers exactly one event: its ``trigger_event_ts``), and counts the events whose feed never
  arrived as missing.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from core.errors import StartupError
from core.events import Interaction, InteractionType, ItemUpsert, UserUpsert, decode_feed, encode
from core.settings import Settings
from core.topics import Topics

CATEGORIES = [f"cat{j}" for j in range(24)]
K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "base"
LOCAL_ONLY = ("HOST", "PORT", "OPS_PORT")  # where to listen: the local stack picks these


@dataclass
class Seeded:
    users: list[str]
    events: list[Interaction]
    items: list[ItemUpsert]


def world(n_items: int, n_users: int, n_events: int, seed: int = 0) -> Seeded:
    rng = np.random.default_rng(seed)
    now = time.time()
    items = [ItemUpsert(item_id=f"i{j:06d}", title=f"item {j} {CATEGORIES[j % len(CATEGORIES)]}",
                        categories=[CATEGORIES[j % len(CATEGORIES)]],
                        created_at=now - float(rng.uniform(0, 30 * 86400)), timestamp=now - 900)
             for j in range(n_items)]
    ranks = np.minimum(rng.zipf(1.3, n_events) - 1, n_items - 1)
    users = [f"u{k:05d}" for k in range(n_users)]
    events = [Interaction(event_id=f"seed-{k}", user_id=users[int(rng.integers(n_users))],
                          item_id=f"i{int(r):06d}", type=InteractionType.CLICK,
                          timestamp=now - 600 + 600 * k / n_events,
                          context={"device": "mobile" if k % 3 else "desktop"}) for k, r in enumerate(ranks)]
    return Seeded(users, events, items)


def seed(settings: Settings, data: Seeded, timeout_s: float = 900.0) -> dict[str, Any]:
    """Produce the catalogue, users and clicks; return when the worker has applied all of them."""
    from kafka import KafkaProducer

    from feature_store.online.keys import Keys
    from feature_store.online.redis_state import redis_client

    topics = Topics(settings.kafka.topic_prefix)
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, linger_ms=20,
                             batch_size=256 * 1024, max_request_size=4 * 1024 * 1024)
    t0 = time.monotonic()
    client, stats = redis_client(settings), Keys(settings.redis.key_prefix).stats
    for it in data.items:
        producer.send(topics.items, key=it.item_id.encode(), value=encode(it))
    for u in data.users:
        upsert = UserUpsert(user_id=u, timestamp=time.time())
        producer.send(topics.users, key=u.encode(), value=encode(upsert))
    producer.flush()
    _wait(lambda: int(client.hget(stats, "items:processed") or 0) >= len(data.items), timeout_s, "items")
    for ev in data.events:
        producer.send(topics.interactions, key=ev.user_id.encode(), value=encode(ev))
    producer.flush()
    producer.close()
    _wait(lambda: int(client.hget(stats, "interactions:processed") or 0) >= len(data.events), timeout_s,
          "interactions")
    client.close()
    return {"seeded_through": "kafka -> stream worker (effects, Feast rows)", "items": len(data.items),
            "users": len(data.users), "interactions": len(data.events),
            "seed_seconds": round(time.monotonic() - t0, 1)}


def _wait(done: Any, timeout_s: float, what: str) -> None:
    """Poll ``done`` (a Redis read: a slow answer while the worker writes is a "not yet")."""
    import redis

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if done():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise StartupError(f"bench serve: the worker did not apply the seeded {what} within "
                               f"{timeout_s:.0f}s")
        time.sleep(0.5)


def deployment(base: Path = K8S) -> tuple[list[str], dict[str, str]]:
    """(command, ``STREAMREC_API__*`` environment) of the API Deployment and its ConfigMap."""
    docs = [d for d in yaml.safe_load_all((base / "api.yaml").read_text())
            if d and d.get("kind") == "Deployment"]
    container = docs[0]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e}
    for line in (base / "settings.env").read_text().splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and not name.startswith("#"):
            env.setdefault(name, value)
    return list(container["command"]), {k: v for k, v in env.items() if k.startswith("STREAMREC_API__")}


def apply_deployment(settings: Settings, env: dict[str, str]) -> tuple[Settings, dict[str, str]]:
    """The settings with the Deployment's API values (not where to listen: the stack picks that)."""
    values = {k.removeprefix("STREAMREC_API__").lower(): v for k, v in env.items()
              if k.removeprefix("STREAMREC_API__") not in LOCAL_ONLY}
    api = settings.api.model_validate({**settings.api.model_dump(), **values})
    return settings.model_copy(update={"api": api}), values


def check_command(command: list[str], module: str) -> None:
    if command != ["python", "-m", module]:
        raise StartupError(f"bench serve runs the API as `python -m {module}`, the Deployment as "
                           f"{command}: they must be the same")


def drain_publisher(settings: Settings, events: list[Interaction], timeout_s: float = 900.0,
                    quiet_s: float = 5.0) -> dict[str, Any]:
    """Wait until the publisher worked off the feeds the seeded clicks triggered (one per clicked user,
    oldest event first), so the measured window starts from a steady state and a bench event is never
    coalesced with a seeded one (the feed would carry the older event's time). Done when every clicked
    user got an event-triggered feed, or nothing was published for ``quiet_s``, or at ``timeout_s``."""
    from kafka import KafkaConsumer

    want = {e.user_id for e in events}
    got: set[str] = set()
    consumer = KafkaConsumer(Topics(settings.kafka.topic_prefix).feeds, auto_offset_reset="earliest",
                             bootstrap_servers=settings.kafka.bootstrap_servers, fetch_max_wait_ms=100)
    t0 = last = time.monotonic()
    try:
        while len(got) < len(want) and time.monotonic() - t0 < timeout_s:
            batch = [rec for recs in consumer.poll(timeout_ms=500).values() for rec in recs]
            for rec in batch:
                feed = decode_feed(rec.value)
                if feed.trigger_event_ts is not None:
                    got.add(feed.user_id)
            now = time.monotonic()
            last = now if batch else last
            if got and now - last > quiet_s:
                break
    finally:
        consumer.close()
    return {"publisher_backlog_s": round(time.monotonic() - t0, 1), "publisher_backlog_users": len(want),
            "publisher_backlog_published": len(got & want)}


class EventToFeed:
    """Clicks at ``rate`` per second, one in flight per user; the latency of each until its feed is
    read from the ``feeds`` topic; the ones whose feed never came are missing."""

    def __init__(self, settings: Settings, users: list[str], rate: float) -> None:
        self.settings, self.users, self.rate = settings, users, rate
        self.topics = Topics(settings.kafka.topic_prefix)
        self.latencies_ms: list[float] = []
        self.sent = 0
        self._pending: dict[tuple[str, float], float] = {}
        self._busy: set[str] = set()
        self._lock = threading.Lock()
        self.stop = threading.Event()
        self._consumed = threading.Event()
        self._ready = threading.Event()
        self._threads = [threading.Thread(target=self._consume, daemon=True, name="e2f-consume"),
                         threading.Thread(target=self._produce, daemon=True, name="e2f-produce")]

    def start(self) -> EventToFeed:
        self._threads[0].start()
        self._ready.wait(30)
        self._threads[1].start()
        return self

    def finish(self, drain_s: float = 10.0) -> int:
        """Stop sending, wait up to ``drain_s`` for the outstanding feeds; returns the missing count."""
        self.stop.set()
        self._threads[1].join(timeout=10)
        deadline = time.monotonic() + drain_s
        while self._pending and time.monotonic() < deadline:
            time.sleep(0.1)
        self._consumed.set()
        self._threads[0].join(timeout=10)
        return len(self._pending)

    def _produce(self) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=self.settings.kafka.bootstrap_servers, linger_ms=0)
        rng = np.random.default_rng(2)
        start, k = time.monotonic(), 0
        while not self.stop.is_set():
            user = self._free_user(rng)
            ts = time.time()
            item = f"i{int(rng.integers(1000)):06d}"
            ev = Interaction(event_id=uuid.uuid4().hex, user_id=user, item_id=item,
                             type=InteractionType.CLICK, timestamp=ts)
            with self._lock:
                self._pending[(user, ts)] = ts
                self._busy.add(user)
            producer.send(self.topics.interactions, key=user.encode(), value=encode(ev))
            self.sent += 1
            k += 1
            self.stop.wait(max(start + k / self.rate - time.monotonic(), 0.0))
        producer.flush()
        producer.close()

    def _free_user(self, rng: np.random.Generator) -> str:
        while True:
            user = self.users[int(rng.integers(len(self.users)))]
            if user not in self._busy:
                return user

    def _consume(self) -> None:
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(self.topics.feeds, bootstrap_servers=self.settings.kafka.bootstrap_servers,
                                 auto_offset_reset="latest", fetch_max_wait_ms=20)
        while not consumer.assignment():
            consumer.poll(timeout_ms=100)
        self._ready.set()
        while not self._consumed.is_set():
            for records in consumer.poll(timeout_ms=100).values():
                for rec in records:
                    self._on_feed(rec.value)
        consumer.close()

    def _on_feed(self, raw: bytes) -> None:
        feed = decode_feed(raw)
        if feed.trigger_event_ts is None:
            return
        with self._lock:
            sent = self._pending.pop((feed.user_id, feed.trigger_event_ts), None)
            if sent is not None:
                self._busy.discard(feed.user_id)
                self.latencies_ms.append((time.time() - sent) * 1e3)
