"""The Kafka edge shared by the feed API and the publisher: producer, feed sink, impression log."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from kafka import KafkaProducer

from core.errors import StartupError
from core.events import Feed, encode
from core.secrets import kafka_options
from core.settings import Settings
from core.topics import Topics
from iokit import retry
from services.pipeline.impressions import impression_of

log = logging.getLogger(__name__)
MAX_BLOCK_MS = 200  # send() waits at most this long for topic metadata: a request is never held up longer


def kafka_security(settings: Settings) -> dict[str, Any]:
    """kafka-python's SASL/SSL options (core.secrets.kafka_options)."""
    return kafka_options(settings.kafka)


def make_producer(settings: Settings, client_suffix: str) -> KafkaProducer:
    """A kafka-python producer with bounded blocking (never hangs a request for long)."""
    return KafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        client_id=f"{settings.kafka.client_id}-{client_suffix}",
        acks=1, linger_ms=5, max_block_ms=MAX_BLOCK_MS,
        request_timeout_ms=int(settings.kafka.connect_timeout_s * 1000), **kafka_security(settings))


class LazyProducer:
    """Connects in the background; ``get`` returns None until connected (callers degrade, not block)."""

    def __init__(self, settings: Settings, client_suffix: str) -> None:
        self._settings, self._suffix = settings, client_suffix
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._settings.kafka.bootstrap_servers and self._thread is None:
            self._thread = threading.Thread(target=self._connect, name="kafka-connect", daemon=True)
            self._thread.start()

    def _connect(self) -> None:
        try:
            self._producer = retry("kafka producer", lambda: make_producer(self._settings, self._suffix),
                                   self._settings.kafka.connect_retries + 1)
        except StartupError as exc:
            log.error("%s; events/impressions cannot be written", exc)

    def get(self) -> KafkaProducer | None:
        return self._producer

    def wait(self, timeout_s: float) -> KafkaProducer | None:
        if self._thread is not None:
            self._thread.join(timeout_s)
        return self._producer

    def close(self, timeout_s: float = 5.0) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.flush(timeout_s)
            producer.close(timeout_s)


class ImpressionLog:
    """Logs every served feed to the ``impressions`` topic keyed by user_id, from a background thread:
    ``log`` only queues (bounded), so Kafka (encoding, partitioning, a broker that stalls) is never on
    a request's path. A full queue or a failed send drops the impression and counts it (``dropped``)."""

    def __init__(self, producer: LazyProducer, topics: Topics, origin: str, capacity: int = 10_000) -> None:
        self._producer, self._topic, self._origin = producer, topics.impressions, origin
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
        producer = self._producer.get()
        if producer is None:
            self.dropped += 1
            return
        rec = impression_of(feed, self._origin, latency_ms)
        try:
            producer.send(self._topic, key=feed.user_id.encode(), value=encode(rec))
        except Exception as exc:  # noqa: BLE001 - losing an impression must not fail the feed
            self.dropped += 1
            log.warning("impression for feed %s dropped: %s", feed.feed_id, exc)

    def flush(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) until the queued impressions were handed to the producer."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is queued (bounded wait), then stop the thread."""
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout_s)
