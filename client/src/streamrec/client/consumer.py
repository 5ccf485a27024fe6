"""Iterate over the feeds the platform publishes (the ``feeds`` topic, keyed by user id)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner.default import murmur2

from streamrec.client.events import Feed
from streamrec.client.schemas import InvalidEvent

log = logging.getLogger(__name__)
FEEDS = "feeds"


def partition_of(key: str, partitions: int) -> int:
    """The partition a key lands on with Kafka's default partitioner (murmur2), as the publisher sends."""
    return int(murmur2(key.encode()) & 0x7FFFFFFF) % partitions


class FeedConsumer:
    """Feeds as they are published, for one user (``user_id``) or for all.

    Without ``group_id`` the consumer joins no group: it reads the partitions itself (only the one
    holding ``user_id``'s feeds when a user is given), from the beginning or from now. With a
    ``group_id`` it subscribes, and the group shares the partitions and keeps the offsets. Iteration
    ends after ``idle_timeout_s`` without a new feed (None: never), or once ``stop()`` is called (from
    another thread, say). A record that is not a valid feed is skipped and counted in ``skipped``.
    """

    def __init__(self, bootstrap_servers: str | list[str], *, user_id: str | None = None,
                 topic_prefix: str = "", from_beginning: bool = True, group_id: str | None = None,
                 idle_timeout_s: float | None = None, metadata_timeout_s: float = 10.0,
                 **kafka_config: Any) -> None:
        self.user_id, self.idle_timeout_s, self.skipped = user_id, idle_timeout_s, 0
        self.topic = f"{topic_prefix}{FEEDS}"
        reset = "earliest" if from_beginning else "latest"
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=group_id,
                                       auto_offset_reset=reset, enable_auto_commit=group_id is not None,
                                       **kafka_config)
        self._closed = self._stopped = False
        if group_id is not None:
            self._consumer.subscribe([self.topic])
        else:
            self._assign(metadata_timeout_s, from_beginning)

    def _assign(self, timeout_s: float, from_beginning: bool) -> None:
        parts = self._partitions(timeout_s)
        if self.user_id is not None:
            parts = [parts[partition_of(self.user_id, len(parts))]]
        self._consumer.assign(parts)
        (self._consumer.seek_to_beginning if from_beginning else self._consumer.seek_to_end)(*parts)

    def _partitions(self, timeout_s: float) -> list[TopicPartition]:
        deadline = time.monotonic() + timeout_s
        while not (ids := self._consumer.partitions_for_topic(self.topic)):
            if time.monotonic() > deadline:
                self._consumer.close()
                raise LookupError(f"topic {self.topic!r} not found within {timeout_s:.0f}s")
            time.sleep(0.2)
        return [TopicPartition(self.topic, p) for p in sorted(ids)]

    def poll(self, timeout_s: float = 1.0) -> list[Feed]:
        """The feeds that arrived within ``timeout_s`` (possibly none)."""
        feeds = []
        for records in self._consumer.poll(timeout_ms=int(timeout_s * 1000)).values():
            for rec in records:
                feed = self._decode(rec)
                if feed is not None and (self.user_id is None or feed.user_id == self.user_id):
                    feeds.append(feed)
        return feeds

    def _decode(self, rec: Any) -> Feed | None:
        try:
            return Feed.parse(json.loads(rec.value))
        except (ValueError, TypeError, InvalidEvent) as exc:
            self.skipped += 1
            log.warning("skipped %s[%d]@%d: not a feed (%s)", rec.topic, rec.partition, rec.offset, exc)
            return None

    def __iter__(self) -> Iterator[Feed]:
        last = time.monotonic()
        while not (self._stopped or self._closed):
            feeds = self.poll(0.5)
            if feeds:
                last = time.monotonic()
            yield from feeds
            if self.idle_timeout_s is not None and time.monotonic() - last > self.idle_timeout_s:
                return

    def stop(self) -> None:
        """End the iteration after the current poll (thread-safe: sets a flag)."""
        self._stopped = True

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._consumer.close()

    def __enter__(self) -> FeedConsumer:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
