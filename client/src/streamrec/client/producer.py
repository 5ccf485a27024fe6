"""Send validated events to the platform's input topics with the keys the platform partitions by."""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Any

from kafka import KafkaProducer
from kafka.producer.future import FutureRecordMetadata

from streamrec.client.events import Event


class Producer:
    """A Kafka producer of :class:`Interaction`, :class:`ItemUpsert` and :class:`UserUpsert`.

    Every event is validated against the platform's schema before it is sent: a malformed one raises
    :class:`InvalidEvent` (naming the field) and is never produced. ``topic_prefix`` is the platform's
    ``kafka.topic_prefix``. Extra keyword arguments go to ``kafka.KafkaProducer`` (security, SASL...).
    """

    def __init__(self, bootstrap_servers: str | list[str], *, topic_prefix: str = "",
                 **kafka_config: Any) -> None:
        config: dict[str, Any] = {"acks": "all", "linger_ms": 5, "max_block_ms": 10_000, **kafka_config}
        self.topic_prefix = topic_prefix
        self._producer = KafkaProducer(bootstrap_servers=bootstrap_servers, **config)

    def topic(self, event: Event) -> str:
        return f"{self.topic_prefix}{event.topic}"

    def send(self, event: Event) -> FutureRecordMetadata:
        """Validate and send one event (asynchronously: ``.get(timeout)`` on the result waits)."""
        value = event.encode()
        return self._producer.send(self.topic(event), key=event.key.encode(), value=value)

    def send_all(self, events: Iterable[Event], timeout_s: float = 30.0) -> int:
        """Validate every event first (none is sent when one is invalid), send them and wait for the
        broker's acknowledgements. Returns the number sent."""
        batch = [(self.topic(ev), ev.key.encode(), ev.encode()) for ev in events]
        futures = [self._producer.send(topic, key=key, value=value) for topic, key, value in batch]
        for future in futures:
            future.get(timeout=timeout_s)
        return len(futures)

    def flush(self, timeout_s: float | None = None) -> None:
        self._producer.flush(timeout=timeout_s)

    def close(self, timeout_s: float | None = 10.0) -> None:
        self._producer.close(timeout=timeout_s)

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
