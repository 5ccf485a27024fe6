"""The memory-only broker restarts under a running worker (a new Tansu on the same port): offsets
start at 0 again while the worker's watermarks in Redis remember the old ones. Events produced to
the new broker at once (before the worker can notice) are every one applied, none taken for a
replay: the state equals a reference run of all events, old and new.

The worker notices the new topic ids and exits (code 75) so that its supervisor restarts it; this
test is the supervisor (as ``streamrec up`` is), restarting it on any exit."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
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

from core.events import Interaction, encode
from core.settings import Settings
from core.topics import Topics
from iokit import ChildProcess
from services.localstack import start_broker
from streams.incarnation import EXIT_NEW_INCARNATION

pytestmark = pytest.mark.integration


class Supervised:
    """Restarts the worker whenever it exits, like the stack's supervisor; keeps the exit codes."""

    def __init__(self, s: Settings) -> None:
        self.s, self.exits, self.worker = s, [], start_worker(s, "worker-0")

    def poll(self) -> bool:
        if not self.worker.alive():
            self.exits.append(self.worker.returncode)
            self.worker = start_worker(self.s, f"worker-{len(self.exits)}")
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
    sup = Supervised(s)
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
