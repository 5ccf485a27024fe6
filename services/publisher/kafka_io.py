"""The Kafka edge shared by the feed API and the publisher: producer, feed sink, impression log.

Impressions (one per served feed, the API's and the publisher's most frequent record) go out through
librdkafka (confluent-kafka): ``produce`` only queues the record in C, and librdkafka's own threads
batch and deliver it without holding the GIL. kafka-python's sender thread, polling, batching and
encoding in Python beside the feed threads, was ~6 % of the live API's busy thread samples."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from confluent_kafka import KafkaException, Producer
from kafka import KafkaProducer

from core.errors import StartupError
from core.events import Feed, encode
from core.secrets import kafka_options, librdkafka_options
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


class RecordSink(Protocol):
    """Where the impression log's records go: ``produce`` queues one (False: refused now, e.g. not
    configured or its buffer full); ``on_failed`` is called if it is later not delivered."""

    def produce(self, topic: str, key: bytes, value: bytes, on_failed: Callable[[str], None]) -> bool: ...

    def flush(self, timeout_s: float) -> int: ...


class CProducer:
    """A librdkafka producer (acks=1, 5 ms linger, the settings' security options); none without
    ``kafka.bootstrap_servers`` (every record refused). It connects in its own threads: ``produce``
    never waits for the broker; records it cannot deliver within ``message.timeout.ms`` fail."""

    def __init__(self, settings: Settings, client_suffix: str) -> None:
        k = settings.kafka
        self._producer = Producer({
            "bootstrap.servers": k.bootstrap_servers, "client.id": f"{k.client_id}-{client_suffix}",
            "acks": 1, "linger.ms": 5, "request.timeout.ms": int(k.connect_timeout_s * 1000),
            "log_level": 3, **librdkafka_options(k)}) if k.bootstrap_servers else None

    def produce(self, topic: str, key: bytes, value: bytes, on_failed: Callable[[str], None]) -> bool:
        if self._producer is None:
            return False

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                on_failed(str(err))

        try:
            self._producer.produce(topic, key=key, value=value, on_delivery=delivered)
        except (BufferError, KafkaException) as exc:
            log.warning("record to %s refused by the producer: %s", topic, exc)
            return False
        self._producer.poll(0)  # serve the delivery reports of earlier records
        return True

    def flush(self, timeout_s: float) -> int:
        """Deliver what is queued (bounded); the records still undelivered."""
        return self._producer.flush(timeout_s) if self._producer is not None else 0


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

    @property
    def sink(self) -> RecordSink:
        return self._sink

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
