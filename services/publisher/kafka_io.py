"""The Kafka edge shared by the feed API and the publisher: one librdkafka producer per process (feeds,
impressions, the API's ingest writes) and the impression log.

Every record goes out through librdkafka (confluent-kafka): ``produce`` only queues it in C, and
librdkafka's own threads batch and deliver it without holding the GIL; a poller thread serves the
delivery reports. kafka-python's sender thread, polling, batching and encoding in Python beside the
feed threads, was ~6 % of the live API's busy thread samples (impressions, b979cb5)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from confluent_kafka import KafkaException, Producer

from core.events import Feed, encode
from core.secrets import kafka_options, librdkafka_options
from core.settings import Settings
from core.topics import Topics
from services.pipeline.impressions import impression_of

log = logging.getLogger(__name__)
POLL_S = 0.1  # the poller's wait for delivery reports (it wakes at once when one arrives)
OnFailed = Callable[[str], None]


def kafka_security(settings: Settings) -> dict[str, Any]:
    """kafka-python's SASL/SSL options (core.secrets.kafka_options), for the consumers."""
    return kafka_options(settings.kafka)


class NotDelivered(Exception):
    """Records the broker did not acknowledge in time (or refused); the reason is the message."""


class RecordSink(Protocol):
    """Where records go: ``produce`` queues one (False: refused now, e.g. not configured or its
    buffer full; ``value`` None: a tombstone); ``on_failed`` is called if it is later not delivered."""

    def produce(self, topic: str, key: bytes, value: bytes | None, on_failed: OnFailed) -> bool: ...

    def flush(self, timeout_s: float) -> int: ...


class _Batch:
    """Delivery reports of a batch sent with :meth:`CProducer.send`: done when every record reported."""

    def __init__(self, n: int) -> None:
        self.left, self.error = n, ""
        self.done = threading.Event()
        self._lock = threading.Lock()
        if n == 0:
            self.done.set()

    def report(self, err: Any, _msg: Any) -> None:
        with self._lock:
            if err is not None and not self.error:
                self.error = str(err)
            self.left -= 1
            if self.left <= 0:
                self.done.set()


# A keyed record lands where Kafka's Java client and kafka-python put it (murmur2 of the key), not
# where librdkafka's default (CRC32) would: a user's feeds on the partition the client reads
# (``streamrec.client.FeedConsumer``), a user's events on one partition whoever produced them.
SAME_PARTITIONS = {"partitioner": "murmur2_random"}


class CProducer:
    """The process's librdkafka producer (acks=1, 5 ms linger, the settings' security options); none
    without ``kafka.bootstrap_servers`` (every record refused, never ready). ``start`` runs its poller
    thread: it fetches the cluster's metadata once (``ready`` from then on), then serves delivery
    reports. ``produce`` never waits for the broker; records it cannot deliver within
    ``kafka.delivery_timeout_s`` fail (their ``on_failed`` is called)."""

    def __init__(self, settings: Settings, client_suffix: str) -> None:
        k = settings.kafka
        self._timeout_s = k.connect_timeout_s
        self._client: Any = Producer({
            "bootstrap.servers": k.bootstrap_servers, "client.id": f"{k.client_id}-{client_suffix}",
            "acks": 1, "linger.ms": 5, "request.timeout.ms": int(k.connect_timeout_s * 1000),
            "message.timeout.ms": int(k.delivery_timeout_s * 1000), **SAME_PARTITIONS,
            "log_level": 3, **librdkafka_options(k)}) if k.bootstrap_servers else None
        self._connected, self._stop = threading.Event(), threading.Event()
        self._poller: threading.Thread | None = None

    def start(self) -> None:
        if self._client is not None and self._poller is None:
            self._poller = threading.Thread(target=self._run, name="kafka-poll", daemon=True)
            self._poller.start()

    def _run(self) -> None:
        while not self._connected.is_set() and not self._stop.is_set():
            try:
                self._client.list_topics(timeout=self._timeout_s)
                self._connected.set()
            except KafkaException as exc:
                log.warning("kafka not reachable yet (%s); retrying", exc)
                self._stop.wait(1.0)
        while not self._stop.is_set():
            self._client.poll(POLL_S)

    def ready(self) -> bool:
        """The cluster answered once (records produced before are queued, not lost)."""
        return self._connected.is_set()

    def wait(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def produce(self, topic: str, key: bytes, value: bytes | None, on_failed: OnFailed) -> bool:
        if self._client is None:
            return False

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                on_failed(str(err))

        return self._queue(topic, key, value, delivered)

    def _queue(self, topic: str, key: bytes, value: bytes | None, report: Callable[[Any, Any], None]) -> bool:
        try:
            self._client.produce(topic, key=key, value=value, on_delivery=report)
        except (BufferError, KafkaException) as exc:
            log.warning("record to %s refused by the producer: %s", topic, exc)
            return False
        return True

    def send(self, topic: str, keys: Sequence[bytes], values: Sequence[bytes], timeout_s: float) -> None:
        """Produce every record and wait until the broker acknowledged them all; else
        :class:`NotDelivered` (not connected yet, refused, a failed delivery, or no answer in time)."""
        if not self.ready():
            raise NotDelivered("kafka producer not connected yet")
        batch = _Batch(len(keys))
        for key, value in zip(keys, values, strict=True):
            if not self._queue(topic, key, value, batch.report):
                raise NotDelivered("the producer's queue is full")
        if not batch.done.wait(timeout_s):
            raise NotDelivered(f"no acknowledgement within {timeout_s:g} s")
        if batch.error:
            raise NotDelivered(batch.error)

    def flush(self, timeout_s: float) -> int:
        """Deliver what is queued (bounded); the records still undelivered."""
        return int(self._client.flush(timeout_s)) if self._client is not None else 0

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the poller, then deliver what is queued (bounded wait)."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout_s)
        left = self.flush(timeout_s)
        if left:
            log.warning("%d record(s) still undelivered at shutdown", left)


class ImpressionLog:
    """Logs every served feed to the ``impressions`` topic keyed by user_id, from a background thread:
    ``log`` only queues (bounded), so encoding and Kafka are never on a request's path; the thread
    hands each record to ``sink`` (a :class:`CProducer`). A full queue, a refused record or a failed
    delivery drops the impression and counts it (``dropped``)."""

    def __init__(self, sink: RecordSink, topics: Topics, origin: str, capacity: int = 10_000) -> None:
        self._sink, self._topic, self._origin = sink, topics.impressions, origin
        self.dropped = 0
        self._queue: queue.Queue[tuple[Feed, float | None] | None] = queue.Queue(capacity)
        self._thread = threading.Thread(target=self._run, name="impressions", daemon=True)
        self._thread.start()

    def log(self, feed: Feed, latency_ms: float | None = None) -> None:
        try:
            self._queue.put_nowait((feed, latency_ms))
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._send(*item)
            finally:
                self._queue.task_done()

    def _send(self, feed: Feed, latency_ms: float | None) -> None:
        rec = impression_of(feed, self._origin, latency_ms)
        try:
            sent = self._sink.produce(self._topic, feed.user_id.encode(), encode(rec), self._failed)
        except Exception as exc:  # noqa: BLE001 - losing an impression must not fail the feed
            sent = False
            log.warning("impression for feed %s dropped: %s", feed.feed_id, exc)
        if not sent:
            self.dropped += 1

    def _failed(self, reason: str) -> None:
        self.dropped += 1
        log.warning("an impression was not delivered: %s", reason)

    def flush(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) until the queued impressions were handed to the producer and delivered."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)
        self._sink.flush(max(deadline - time.monotonic(), 0.0))

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is queued (bounded wait), then stop the thread and deliver what the producer holds."""
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout_s)
        self._sink.flush(timeout_s)
