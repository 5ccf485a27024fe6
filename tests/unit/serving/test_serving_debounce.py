"""Publisher debouncing: one feed per user per window, safe commit offsets, refresh reasons."""

from __future__ import annotations

import time
from collections.abc import Callable

from serving_events import click, memory_state

from core.errors import StoreUnavailable
from core.online import UserState
from core.settings import Settings
from core.topics import Topics
from feature_store.online.memory_state import MemoryOnline
from funnel.pipeline import Pipeline
from services.publisher.debounce import Debouncer
from services.publisher.service import Publisher


def test_debounce_merges_and_tracks_offsets():
    d = Debouncer(0.1)
    d.add("u1", 5.0, now=0.0, tp=("t", 0), offset=7)
    d.add("u1", 3.0, now=0.05, tp=("t", 0), offset=9)
    d.add("u2", 4.0, now=0.05, tp=("t", 1), offset=2)
    assert d.min_offsets() == {("t", 0): 7, ("t", 1): 2}
    assert d.due(0.09) == [] and d.next_due_in(0.09) is not None
    (p,) = d.due(0.11)
    assert p.user_id == "u1" and p.first_event_ts == 3.0 and d.min_offsets() == {("t", 1): 2}
    d.retry(p, now=0.2, delay_s=1.0)
    assert [q.user_id for q in d.due(0.5)] == ["u2"] and len(d) == 1
    assert [q.user_id for q in d.due(1.3)] == ["u1"] and p.attempts == 1


def test_schedule_refresh_carries_no_event_time_until_an_event_joins():
    d = Debouncer(0.0)
    d.add("u", None, now=0.0, reason="schedule")
    (p,) = d.due(0.0)
    assert p.first_event_ts is None and p.reason == "schedule"
    d.add("u", None, now=1.0, reason="model")
    d.add("u", 0.5, now=1.0)
    (p,) = d.due(1.0)
    assert p.first_event_ts == 0.5 and p.reason == "interaction"


class _FakeProducer:
    """CProducer's interface: records (topic, key); ``fail`` topics' records fail at the next flush."""

    def __init__(self, fail: tuple[str, ...] = ()) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.fail, self._failing = fail, []

    def produce(self, topic: str, key: bytes, value: bytes | None, on_failed: Callable[[str], None]) -> bool:
        self.sent.append((topic, key))
        if topic in self.fail:
            self._failing.append(on_failed)
        return True

    def flush(self, timeout_s: float) -> int:
        while self._failing:
            self._failing.pop()("Local: Message timed out")
        return 0

    def ready(self) -> bool:
        return True


class DownState(MemoryOnline):
    """The in-process store with its user reads failing like a dead Redis until ``down`` is cleared."""

    down = True

    def user(self, user_id: str) -> UserState:
        if self.down:
            raise StoreUnavailable("redis down")
        return super().user(user_id)


def test_publisher_never_publishes_a_degraded_feed_and_retries():
    settings = Settings(publisher={"debounce_ms": 0})
    state = memory_state(settings, {"a": []}, [click("x", "a")], state=DownState(settings))
    fake = _FakeProducer()
    pub = Publisher(settings, Pipeline(settings, state), fake)
    pub.debouncer.add("u1", 1.0, now=0.0)
    pub.publish_due(now=0.0)
    assert fake.sent == [] and len(pub.debouncer) == 1  # queued again, with backoff
    state.down = False  # the store is back
    pub.publish_due(now=10.0)
    pub.impressions.flush()  # impressions go out from a background thread
    topics = [t for t, _ in fake.sent]
    assert topics == [pub.topics.feeds, pub.topics.impressions] and len(pub.debouncer) == 0


def test_users_who_just_acted_go_before_a_bulk_refresh():
    d = Debouncer(0.0)
    for i in range(500):
        d.add(f"r{i}", None, now=0.0, reason="model")
    d.add("late", 9.0, now=1.0)
    d.add("early", 8.0, now=1.0)
    first = d.due(1.0, limit=3)
    assert [p.user_id for p in first] == ["early", "late", "r0"]
    assert len(d) == 499


def test_publisher_works_off_a_refresh_in_slices_and_serves_new_events_first():
    settings = Settings(publisher={"debounce_ms": 0})
    fake = _FakeProducer()
    pipeline = Pipeline(settings, memory_state(settings, {"a": []}, [click("x", "a")]))
    pub = Publisher(settings, pipeline, fake)
    for i in range(5000):
        pub.debouncer.add(f"r{i}", None, now=0.0, reason="model")
    pub.publish_due(now=0.0)
    assert 0 < len(pub.debouncer) < 5000  # returned to polling with refreshes left
    pub.debouncer.add("acted", 1.0, now=0.0)
    pub.impressions.flush()
    fake.sent.clear()
    pub.publish_due(now=0.0)
    assert fake.sent[0] == (pub.topics.feeds, b"acted")


def test_refreshes_are_held_to_their_rate_and_events_are_not():
    settings = Settings(publisher={"debounce_ms": 0, "refresh_per_s": 20.0})
    fake = _FakeProducer()
    pipeline = Pipeline(settings, memory_state(settings, {"a": []}, [click("x", "a")]))
    pub = Publisher(settings, pipeline, fake)
    for i in range(200):
        pub.debouncer.add(f"r{i}", None, now=0.0, reason="model")
    for i in range(30):
        pub.debouncer.add(f"e{i}", 1.0, now=0.0)
    for _ in range(5):
        pub.publish_due(now=0.0)
    users = [key.decode() for topic, key in fake.sent if topic == pub.topics.feeds]
    assert sum(u.startswith("e") for u in users) == 30  # every event-triggered feed, at once
    assert 0 < sum(u.startswith("r") for u in users) <= 21  # one second's worth of refreshes (+1 refill)
    assert len(pub.debouncer) == 200 - sum(u.startswith("r") for u in users)


def test_an_undelivered_feed_is_counted_and_published_again_before_its_trigger_is_committed():
    settings = Settings(publisher={"debounce_ms": 0})
    pipeline = Pipeline(settings, memory_state(settings, {"a": []}, [click("x", "a")]))
    fake = _FakeProducer(fail=(Topics("").feeds,))
    pub = Publisher(settings, pipeline, fake)
    pub.debouncer.add("u1", 1.0, now=0.0, tp=("triggers", 0), offset=41)
    pub.publish_due(now=0.0)
    assert pub.debouncer.min_offsets() == {}  # taken: nothing pending holds offset 41 back now
    fake.flush(1.0)  # the broker's answer: not delivered
    assert pub.metrics.undelivered.labels("feed")._value.get() == 1
    assert pub.requeue_undelivered() == 1
    assert pub.debouncer.min_offsets() == {("triggers", 0): 41}  # a commit stays below the trigger
    fake.fail = ()
    pub.publish_due(now=time.time() + 1.0)
    assert [k for t, k in fake.sent if t == pub.topics.feeds] == [b"u1", b"u1"] and len(pub.debouncer) == 0
