"""The memory-only broker restarts under running workers (a new Tansu on the same port): offsets
start at 0 again while the workers' watermarks in Redis remember the old ones. Events produced to
the new broker at once (before the workers can notice) are every one applied, none taken for a
replay: the state equals a reference run of all events, old and new.

A worker notices the new topic ids and exits (code 75) so that its supervisor restarts it; this
test is the supervisor (as ``streamrec up`` is), restarting it on any exit. With two workers in one
group the publisher runs too, and keeps turning the workers' feed triggers into feeds after the
restart."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaConsumer
from streams_harness import (
    assert_same,
    create_topics,
    dump,
    interactions,
    items,
    make_settings,
    producer,
    reference_state,
    start_worker,
    stats,
    wait_for,
)

from core.events import Interaction, decode_feed, encode
from core.settings import Settings
from core.topics import Topics
from iokit import ChildProcess, free_port, spawn
from services.localstack import start_broker
from streams.incarnation import EXIT_NEW_INCARNATION

pytestmark = pytest.mark.integration


class Supervised:
    """Restarts a child whenever it exits, like the stack's supervisor; keeps the exit codes."""

    def __init__(self, start: Callable[[str], ChildProcess], name: str = "worker") -> None:
        self.start, self.name, self.exits = start, name, []
        self.worker = start(f"{name}-0")

    def poll(self) -> bool:
        if not self.worker.alive():
            self.exits.append(self.worker.returncode)
            self.worker = self.start(f"{self.name}-{len(self.exits)}")
        return True

    def stop(self) -> int:
        return self.worker.stop()


@pytest.mark.parametrize("n_after", [400, 1600], ids=["fewer-new-events", "more-new-events"])
def test_new_events_after_a_broker_restart_are_all_applied(tmp_path: Path, redis_url: str,
                                                           n_after: int) -> None:
    """More new events than old ones: the old consumer's positions are valid offsets on the new
    broker, so it could fetch from the middle of the new topics before it notices."""
    bootstrap, broker = start_broker(tmp_path / "broker-0")
    port = int(bootstrap.rsplit(":", 1)[1])
    s = make_settings(tmp_path, bootstrap, redis_url)
    create_topics(s)
    now = time.time()
    catalog = items(20, now)
    events = interactions(800 + n_after, users=40, n_items=20, now=now)
    before, after = events[:800], [_renamed(e) for e in events[800:]]
    sup = Supervised(lambda name: start_worker(s, name))
    try:
        _send(s, [(Topics(s.kafka.topic_prefix).items, it.item_id, encode(it)) for it in catalog])
        wait_for(lambda: sup.poll() and stats(s).get("items:processed", 0) == len(catalog), 60, "catalog")
        _send_events(s, before)
        wait_for(lambda: sup.poll() and stats(s).get("interactions:processed", 0) == len(before), 90,
                 "events before the restart")
        broker = _restart(broker, tmp_path, port)
        create_topics(s)  # as the stack does when its broker comes back
        _send_events(s, after)  # at once: the worker has not noticed yet
        wait_for(lambda: sup.poll() and stats(s).get("interactions:processed", 0) >= len(events), 120,
                 "events after the restart")
        time.sleep(1.0)  # nothing more arrives (no duplicate application)
        sup.poll()
    finally:
        sup.stop()
        broker.stop()
    assert sup.exits and set(sup.exits) == {EXIT_NEW_INCARNATION}, f"worker exit codes {sup.exits}"
    st = stats(s)
    assert st["interactions:processed"] == len(events), st
    assert st.get("interactions:duplicates", 0) == 0, st
    assert_same(dump(s, s.redis.key_prefix), dump(s, reference_state(s, catalog, before + after)))


def _renamed(ev: Interaction) -> Interaction:
    return ev.model_copy(update={"event_id": f"new-{ev.event_id}"})


def _restart(broker: ChildProcess, tmp_path: Path, port: int) -> ChildProcess:
    broker.stop()
    _, child = start_broker(tmp_path / "broker-1", port=port)
    return child


def _send_events(s: Settings, events: list[Interaction]) -> None:
    topic = Topics(s.kafka.topic_prefix).interactions
    _send(s, [(topic, e.user_id, encode(e)) for e in events])


def _send(s: Settings, records: list[tuple[str, str, bytes]]) -> None:
    prod = producer(s)
    for topic, key, value in records:
        prod.send(topic, key=key.encode(), value=value)
    prod.flush()
    prod.close()


def test_two_workers_and_the_publisher_carry_on_after_a_broker_restart(tmp_path: Path,
                                                                       redis_url: str) -> None:
    bootstrap, broker = start_broker(tmp_path / "broker-0")
    port = int(bootstrap.rsplit(":", 1)[1])
    s = make_settings(tmp_path, bootstrap, redis_url)
    create_topics(s)
    now = time.time()
    catalog = items(20, now)
    events = interactions(2400, users=60, n_items=20, now=now)
    before, after = events[:1200], [_renamed(e) for e in events[1200:]]
    workers = [Supervised(lambda name, n=n: _worker(s, name), f"w{n}") for n in range(2)]
    publisher = Supervised(lambda name: _publisher(s, name), "publisher")
    everyone = [*workers, publisher]
    try:
        _send(s, [(Topics(s.kafka.topic_prefix).items, it.item_id, encode(it)) for it in catalog])
        def up() -> bool:
            return all(x.poll() for x in everyone)

        wait_for(lambda: up() and stats(s).get("items:processed", 0) == len(catalog), 60, "catalog")
        _send_events(s, before)
        wait_for(lambda: up() and stats(s).get("interactions:processed", 0) == len(before), 90,
                 "events before the restart")
        broker = _restart(broker, tmp_path, port)
        create_topics(s)
        _send_events(s, after)
        wait_for(lambda: up() and stats(s).get("interactions:processed", 0) >= len(events), 180,
                 "events after the restart")
        feeds = _feed_users(s, {e.user_id for e in after}, everyone)
        time.sleep(1.0)
        for x in everyone:
            x.poll()
    finally:
        for x in everyone:
            x.stop()
        broker.stop()
    exits = [w.exits for w in workers]
    assert all(e and set(e) == {EXIT_NEW_INCARNATION} for e in exits), exits
    st = stats(s)
    assert st["interactions:processed"] == len(events), st
    assert st.get("interactions:duplicates", 0) == 0, st
    assert_same(dump(s, s.redis.key_prefix), dump(s, reference_state(s, catalog, before + after)))
    assert feeds >= {e.user_id for e in after[-200:]}, "the publisher did not publish feeds after the restart"


def _worker(s: Settings, name: str) -> ChildProcess:
    return start_worker(s.model_copy(update={"worker": s.worker.model_copy(
        update={"metrics_port": free_port()})}), name)


def _publisher(s: Settings, name: str) -> ChildProcess:
    env = {"STREAMREC_KAFKA__BOOTSTRAP_SERVERS": s.kafka.bootstrap_servers or "",
           "STREAMREC_KAFKA__TOPIC_PREFIX": s.kafka.topic_prefix, "STREAMREC_REDIS__URL": s.redis.url or "",
           "STREAMREC_REDIS__KEY_PREFIX": s.redis.key_prefix, "STREAMREC_DATA_DIR": str(s.data_dir),
           "STREAMREC_PUBLISHER__METRICS_PORT": str(free_port()),
           "STREAMREC_PUBLISHER__DEBOUNCE_MS": "50",
           "STREAMREC_PUBLISHER__GROUP_ID": f"pub-{s.kafka.topic_prefix}", "STREAMREC_LOG_LEVEL": "WARNING",
           "STREAMREC_FEAST__PROJECT": s.feast.project, "PYTHONPATH": os.getcwd()}
    return spawn(name, [sys.executable, "-m", "services.publisher"], s.data_dir / "logs", env)


def _feed_users(s: Settings, wanted: set[str], everyone: list[Supervised],
                timeout_s: float = 60.0) -> set[str]:
    """Users with a feed on the (new) broker's feeds topic, until every wanted one has one."""
    consumer = KafkaConsumer(Topics(s.kafka.topic_prefix).feeds, auto_offset_reset="earliest",
                             bootstrap_servers=s.kafka.bootstrap_servers, consumer_timeout_ms=500)
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    while not wanted <= seen and time.monotonic() < deadline:
        seen |= {decode_feed(rec.value).user_id for rec in consumer}
        for x in everyone:
            x.poll()
    consumer.close()
    return seen
