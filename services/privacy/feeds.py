"""A deleted item leaves the compacted ``feeds`` topic: every user whose last feed there holds it gets a
new version of that feed without it (same key, so it supersedes the old one for every reader, and
compaction then drops the old one).

The eraser calls this after the online state is changed and the deletion announced to the serving
processes (``Keys.forgotten``), and after ``eraser.feeds_grace_s``: by then every publisher has heard
of the deletion, so any feed it sends later is clean (``funnel.pipeline.Pipeline.forget``), and a feed
it sent before is on the topic when the scan reads it. The scan reads each partition up to its end
offset at the start, keeping only the keys whose latest record names the item (memory: the users
affected, not the topic).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from core.events import EventError, decode_feed, encode
from core.secrets import kafka_options
from core.settings import Settings
from core.topics import Topics
from funnel.fallback import superseding, without

log = logging.getLogger(__name__)
TRIGGER = "deletion"  # Feed.trigger of a feed the eraser rewrote


def rewrite_feeds(settings: Settings, producer: Any, item_id: str, timeout_s: float = 120.0) -> int:
    """Publish, for every key whose latest feed holds ``item_id``, that feed without it; returns how
    many. Raises ``TimeoutError`` when the topic cannot be read to its end within ``timeout_s`` (the
    request is then applied again)."""
    topic = Topics(settings.kafka.topic_prefix).feeds
    holding = _latest_holding(settings, topic, item_id.encode(), timeout_s)
    rewritten = 0
    for key, raw in holding.items():
        try:
            feed = decode_feed(raw)
        except EventError as exc:
            log.warning("feeds: skipped a record of key %r that is not a feed (%s)", key, exc.reason)
            continue
        clean = without(feed, item_id.__eq__)
        if clean is feed:
            continue  # the id's bytes appeared elsewhere (another item's id, a rule)
        producer.send(topic, key=key, value=encode(superseding(clean, feed, TRIGGER, time.time())))
        rewritten += 1
    if rewritten:
        producer.flush(timeout=30)
    log.info("feeds: %d user(s)' last feed rewritten without item %s", rewritten, item_id)
    return rewritten


def _latest_holding(settings: Settings, topic: str, needle: bytes, timeout_s: float) -> dict[bytes, bytes]:
    """Key -> its latest value, for the keys whose latest value contains ``needle``."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, group_id=None,
                             enable_auto_commit=False, client_id=f"{settings.kafka.client_id}-eraser-feeds",
                             **kafka_options(settings.kafka))
    try:
        ids = consumer.partitions_for_topic(topic)
        if not ids:
            return {}  # no feed was ever published
        parts = [TopicPartition(topic, p) for p in sorted(ids)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        begin, end = consumer.beginning_offsets(parts), consumer.end_offsets(parts)
        left = {tp for tp in parts if end[tp] > begin[tp]}
        holding: dict[bytes, bytes] = {}
        deadline = time.monotonic() + timeout_s
        while left:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: not read to its end within {timeout_s:.0f}s")
            for tp, records in consumer.poll(timeout_ms=500, max_records=5000).items():
                for rec in records:
                    if rec.offset >= end[tp] or rec.key is None:
                        continue
                    if rec.value is not None and needle in rec.value:
                        holding[rec.key] = rec.value
                    else:
                        holding.pop(rec.key, None)  # a newer feed without it, or a tombstone
            left = {tp for tp in left if consumer.position(tp) < end[tp]}
        return holding
    finally:
        consumer.close()
