"""The feed publisher: feed-triggers in, debounced per user, feeds (keyed by user_id) out.

Also republishes feeds of recently active users on a schedule and when a new model or index is
promoted. Offsets are committed only up to the oldest trigger whose feed is not yet delivered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Protocol

from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Histogram

from core.events import EventError, decode_trigger, encode
from core.settings import Settings
from core.topics import Topics
from funnel.pipeline import Pipeline
from services.artifacts.loader import register_loader_metrics
from services.pipeline.forgotten import register_forget_metrics
from services.publisher.debounce import Debouncer, Pending, TokenBucket
from services.publisher.kafka_io import ImpressionLog, RecordSink, kafka_security
from services.publisher.recent import RecentFeeds

log = logging.getLogger(__name__)
COMMIT_EVERY_S = 1.0
RETRY_DELAY_S = 1.0
PUBLISH_SLICE_S = 0.05
PUBLISH_BATCH = 4
Offsets = dict[tuple[str, int], int]  # a trigger's (topic, partition) -> offset


class PublisherMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.published = Counter("streamrec_publisher_feeds", "Feeds published", ["trigger"],
                                 registry=self.registry)
        self.triggers = Counter("streamrec_publisher_triggers", "Triggers consumed", ["outcome"],
                                registry=self.registry)
        self.undelivered = Counter("streamrec_publisher_feeds_undelivered",
                                   "Feeds (and tombstones) the broker did not acknowledge: a feed is "
                                   "computed and sent again", ["kind"], registry=self.registry)
        self.latency = Histogram("streamrec_publisher_event_to_feed_seconds", "Event to feed published",
                                 buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0),
                                 registry=self.registry)
        register_loader_metrics(self.registry)
        register_forget_metrics(self.registry)


class FeedProducer(RecordSink, Protocol):
    """The publisher's one producer (feeds and impressions): a :class:`CProducer`."""

    def ready(self) -> bool: ...


@dataclass(frozen=True)
class Undelivered:
    """A published feed the broker did not acknowledge: its trigger, to be queued again."""

    user_id: str
    reason: str
    event_ts: float | None
    offsets: Offsets


class Publisher:
    def __init__(self, settings: Settings, pipeline: Pipeline, producer: FeedProducer,
                 models_changed: threading.Event | None = None) -> None:
        self.settings, self.pipeline, self.producer = settings, pipeline, producer
        self.topics = Topics(settings.kafka.topic_prefix)
        self.impressions = ImpressionLog(producer, self.topics, "publisher")
        self.undelivered: deque[Undelivered] = deque()  # appended by the producer's poller thread
        self.debouncer = Debouncer(settings.publisher.debounce_ms / 1000.0)
        self.metrics = PublisherMetrics()
        self.active: OrderedDict[str, float] = OrderedDict()
        self.stop_event = threading.Event()
        self.consumer: KafkaConsumer | None = None
        self._last_commit = 0.0
        self._last_schedule = time.monotonic()
        self.models_changed = models_changed or threading.Event()
        self.refresh_bucket = TokenBucket(settings.publisher.refresh_per_s, time.monotonic())
        self.recent = RecentFeeds(pipeline.forgotten)  # what a deletion heard of must still correct

    # ---- consumer --------------------------------------------------------------------------
    def connect(self) -> None:
        self.consumer = KafkaConsumer(
            self.topics.feed_triggers, bootstrap_servers=self.settings.kafka.bootstrap_servers,
            group_id=self.settings.publisher.group_id, client_id=f"{self.settings.kafka.client_id}-publisher",
            enable_auto_commit=False, auto_offset_reset="earliest", max_poll_interval_ms=3000,
            session_timeout_ms=6000, heartbeat_interval_ms=1000, fetch_max_wait_ms=20,
            **kafka_security(self.settings))

    def ready(self) -> bool:
        return self.consumer is not None and self.producer.ready() and self.pipeline.ready()

    def run(self) -> None:
        """Loop until ``stop_event``; then publish what is due, commit and return."""
        while not self.stop_event.is_set():
            self.step()
        self.flush_all()

    def step(self) -> None:
        assert self.consumer is not None
        self.requeue_undelivered()
        self.correct_recent()
        wait = self.debouncer.next_due_in(time.time())
        timeout_ms = int(min(wait if wait is not None else 0.2, 0.2) * 1000)
        for tp, records in self.consumer.poll(timeout_ms=timeout_ms, max_records=2000).items():
            for rec in records:
                self._on_trigger(rec.value, (tp.topic, tp.partition), rec.offset)
        self.publish_due(time.time())
        self._maybe_schedule()
        self._maybe_commit()

    def _on_trigger(self, raw: bytes, tp: tuple[str, int], offset: int) -> None:
        try:
            trig = decode_trigger(raw)
        except EventError as exc:
            log.warning("bad feed trigger at %s@%d: %s", tp, offset, exc)
            self.metrics.triggers.labels("invalid").inc()
            return
        self.metrics.triggers.labels("ok").inc()
        event_ts = trig.event_ts if trig.reason == "interaction" else None  # only events have a latency
        self.debouncer.add(trig.user_id, event_ts, time.time(), tp, offset, trig.reason)
        self.active[trig.user_id] = time.time()
        self.active.move_to_end(trig.user_id)

    # ---- publishing ------------------------------------------------------------------------
    def publish_due(self, now: float) -> None:
        """Publishes due feeds for at most PUBLISH_SLICE_S, then returns to polling, so new triggers
        keep flowing in (and go first) while a refresh of every active user is worked off."""
        deadline = time.monotonic() + PUBLISH_SLICE_S
        while time.monotonic() < deadline:
            batch = self.debouncer.due(now, limit=PUBLISH_BATCH)
            if not batch:
                return
            for p in batch:
                if p.first_event_ts is None and not self.refresh_bucket.take(time.monotonic()):
                    # a refresh over publisher.refresh_per_s waits (event-triggered feeds came first
                    # in this batch; the rest of the due ones are refreshes too)
                    for q in batch[batch.index(p):]:
                        self.debouncer.defer(q, now + self.refresh_bucket.wait_s())
                    return
                if not self.publish_user(p.user_id, p.reason, p.first_event_ts, p.offsets):
                    self.debouncer.retry(p, now, RETRY_DELAY_S * min(2 ** p.attempts, 30))

    def publish_user(self, user_id: str, reason: str, event_ts: float | None = None,
                     offsets: Offsets | None = None) -> bool:
        """Computes and publishes one feed. False when it could only be a degraded feed, or the
        producer is not connected or refuses it (retry later). A feed whose delivery fails later is
        queued again with its trigger's ``offsets`` (:meth:`requeue_undelivered`)."""
        if not self.producer.ready():
            return False
        result = self.pipeline.feed(user_id, self.settings.publisher.feed_size, trigger=reason,
                                    trigger_event_ts=event_ts)
        if result.feed.degraded:
            return False
        again = Undelivered(user_id, reason, event_ts, dict(offsets or {}))
        if not self.producer.produce(self.topics.feeds, user_id.encode(), encode(result.feed),
                                     lambda why: self._not_delivered(again, why)):
            return False
        self.recent.sent(result.feed)
        self.impressions.log(result.feed, sum(result.stages_ms.values()))
        self.metrics.published.labels(reason).inc()
        if event_ts is not None:
            self.metrics.latency.observe(max(time.time() - event_ts, 0.0))
        return True

    def _not_delivered(self, feed: Undelivered, reason: str) -> None:
        """On the producer's poller thread (or a flush): count it, hand it to the publish loop."""
        self.metrics.undelivered.labels("feed").inc()
        self.undelivered.append(feed)
        log.warning("feed for %s not delivered (%s); it is published again", feed.user_id, reason)

    def requeue_undelivered(self) -> int:
        """The feeds whose delivery failed, due again with their triggers' offsets (so no commit
        passes them). Returns how many."""
        n, now = len(self.undelivered), time.time()
        for _ in range(n):
            f = self.undelivered.popleft()
            self.debouncer.add(f.user_id, f.event_ts, now, reason=f.reason)
            for tp, offset in f.offsets.items():
                self.debouncer.add(f.user_id, f.event_ts, now, tp, offset, f.reason)
        return n

    def correct_recent(self) -> int:
        """After a deletion was heard of: supersede the feeds sent lately that hold a deleted item (a
        tombstone for a deleted user), after them on the same producer. Returns how many."""
        fixes = self.recent.corrections()
        if not fixes or not self.producer.ready():
            return 0
        for user_id, feed in fixes:
            value = None if feed is None else encode(feed)
            self.producer.produce(self.topics.feeds, user_id.encode(), value, self._tombstone_failed)
        log.info("superseded %d recently published feed(s) after a deletion", len(fixes))
        return len(fixes)

    def _tombstone_failed(self, reason: str) -> None:
        self.metrics.undelivered.labels("correction").inc()
        log.warning("a superseding feed was not delivered: %s", reason)

    def republish_active(self, reason: str) -> int:
        """Queues every user active within ``publisher.active_user_window_s`` (schedule, new model)."""
        now = time.time()
        horizon = now - self.settings.publisher.active_user_window_s
        while self.active and next(iter(self.active.values())) < horizon:
            self.active.popitem(last=False)
        for user_id in list(self.active):
            self.debouncer.add(user_id, None, now, reason=reason)
        return len(self.active)

    def _maybe_schedule(self) -> None:
        if self.models_changed.is_set():
            self.models_changed.clear()
            self.republish_active("model")
        if time.monotonic() - self._last_schedule >= self.settings.scheduler.publish_active_interval_s:
            self._last_schedule = time.monotonic()
            self.republish_active("schedule")

    # ---- commits ---------------------------------------------------------------------------
    def _maybe_commit(self, force: bool = False) -> None:
        if self.consumer is None or (not force and time.monotonic() - self._last_commit < COMMIT_EVERY_S):
            return
        self._last_commit = time.monotonic()
        if self.producer.flush(self.settings.kafka.connect_timeout_s):
            return  # feeds still in flight: no commit may pass their triggers yet
        self.requeue_undelivered()
        pending = self.debouncer.min_offsets()
        offsets = {}
        for tp in self.consumer.assignment():
            off = pending.get((tp.topic, tp.partition), self.consumer.position(tp))
            offsets[TopicPartition(tp.topic, tp.partition)] = OffsetAndMetadata(off, "", -1)
        if offsets:
            try:
                self.consumer.commit(offsets)
            except Exception as exc:  # noqa: BLE001 - a failed commit only means replays
                log.warning("offset commit failed: %s", exc)

    def flush_all(self) -> None:
        """Shutdown: publish everything pending now, flush, commit."""
        for p in self.debouncer.due(float("inf")):
            self._publish_final(p)
        self._maybe_commit(force=True)

    def _publish_final(self, p: Pending) -> None:
        try:
            self.publish_user(p.user_id, p.reason, p.first_event_ts, p.offsets)
        except Exception as exc:  # noqa: BLE001 - shutting down; replayed on restart
            log.warning("could not publish %s at shutdown: %s", p.user_id, exc)

    def close(self) -> None:
        self.impressions.close(self.settings.kafka.connect_timeout_s)  # queued and held impressions out
        if self.consumer is not None:
            self.consumer.close(autocommit=False)
