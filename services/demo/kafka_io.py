"""kafka-python clients for the CLI: a producer, and a group-less reader of the feeds topic."""

from __future__ import annotations

import collections
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Self

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from core.errors import BrokerUnavailable
from core.events import EventError, Feed, decode_feed
from core.settings import Settings
from services.stack_setup import kafka_config


def make_producer(settings: Settings) -> KafkaProducer:
    """acks=all-ish producer with bounded blocking; raises BrokerUnavailable naming the bootstrap."""
    try:
        return KafkaProducer(**kafka_config(settings), acks=1, linger_ms=5, enable_idempotence=False,
                             max_block_ms=int(settings.kafka.connect_timeout_s * 1000))
    except Exception as exc:  # noqa: BLE001 - kafka-python raises several types here
        raise BrokerUnavailable(f"Kafka at {settings.kafka.bootstrap_servers} "
                                f"(kafka.bootstrap_servers) unreachable: {exc}") from exc


def make_reader(settings: Settings, topic: str, from_beginning: bool = True) -> KafkaConsumer:
    """A consumer assigned to every partition of ``topic`` (no group: nothing to join or commit)."""
    try:
        consumer = KafkaConsumer(**kafka_config(settings), enable_auto_commit=False, group_id=None)
    except Exception as exc:  # noqa: BLE001
        raise BrokerUnavailable(f"Kafka at {settings.kafka.bootstrap_servers} unreachable: {exc}") from exc
    parts = _partitions(consumer, topic, settings.kafka.connect_timeout_s)
    consumer.assign(parts)
    if from_beginning:
        consumer.seek_to_beginning(*parts)
    else:
        consumer.seek_to_end(*parts)
    return consumer


def _partitions(consumer: KafkaConsumer, topic: str, timeout_s: float) -> list[TopicPartition]:
    deadline = time.monotonic() + timeout_s
    while True:
        ids = consumer.partitions_for_topic(topic)
        if ids:
            return [TopicPartition(topic, p) for p in sorted(ids)]
        if time.monotonic() > deadline:
            consumer.close()
            raise BrokerUnavailable(f"topic {topic} not found (is the stack up? `streamrec up`)")
        time.sleep(0.2)


@dataclass
class FeedRecord:
    feed: Feed
    topic_ts: float  # broker/producer timestamp of the record, unix seconds

    @property
    def latency_ms(self) -> float | None:
        ts = self.feed.trigger_event_ts
        return None if ts is None else max(0.0, (self.topic_ts - ts) * 1000.0)


def read_feeds(consumer: KafkaConsumer, stop: Callable[[], bool],
               poll_ms: int = 200) -> Iterator[FeedRecord | EventError]:
    """Decoded feeds (or the decode error) until ``stop()`` is true."""
    while not stop():
        batch: dict[Any, list[Any]] = consumer.poll(timeout_ms=poll_ms)
        for records in batch.values():
            for rec in records:
                try:
                    feed = decode_feed(rec.value)
                except EventError as exc:
                    yield exc
                    continue
                yield FeedRecord(feed, record_ts(rec))


def record_ts(rec: Any) -> float:
    return rec.timestamp / 1000.0 if rec.timestamp and rec.timestamp > 0 else time.time()


class TopicWatcher:
    """A background thread reading every record of one topic from the beginning."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings, self.topic = settings, topic
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        consumer = make_reader(self.settings, self.topic)
        self._thread = threading.Thread(target=self._run, args=(consumer,), name=self.topic, daemon=True)
        self._thread.start()
        return self

    def _run(self, consumer: KafkaConsumer) -> None:
        try:
            while not self._stop.is_set():
                for records in consumer.poll(timeout_ms=200).values():
                    for rec in records:
                        self.handle(rec)
        finally:
            consumer.close()

    def handle(self, rec: Any) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)


class FeedWatcher(TopicWatcher):
    """Counts feeds and their event->feed latency (record timestamp - ``trigger_event_ts``).
    ``published`` queues (monotonic arrival time, feed) for the thread that scores them."""

    def __init__(self, settings: Settings, topic: str) -> None:
        super().__init__(settings, topic)
        self.feeds = self.bad = 0
        self.latencies_ms: list[float] = []
        self.arrivals: list[float] = []
        self.latest: dict[str, Feed] = {}
        self.published: collections.deque[tuple[float, Feed]] = collections.deque()

    def handle(self, rec: Any) -> None:
        try:
            record = FeedRecord(decode_feed(rec.value), record_ts(rec))
        except EventError:
            self.bad += 1
            return
        self.feeds += 1
        self.arrivals.append(time.time())
        self.latest[record.feed.user_id] = record.feed
        self.published.append((time.monotonic(), record.feed))
        if record.latency_ms is not None:
            self.latencies_ms.append(record.latency_ms)


class DeadLetterWatcher(TopicWatcher):
    """Counts dead letters by reason."""

    def __init__(self, settings: Settings, topic: str) -> None:
        super().__init__(settings, topic)
        self.reasons: Counter[str] = Counter()

    @property
    def count(self) -> int:
        return sum(self.reasons.values())

    def handle(self, rec: Any) -> None:
        try:
            reason = str(json.loads(rec.value).get("reason", "unknown"))
        except (ValueError, AttributeError):
            reason = "unreadable_dead_letter"
        self.reasons[reason] += 1
