"""The publish-active job: ask the publisher to refresh the feeds of recently active users, by
emitting FeedTrigger records on the ``feed-triggers`` topic (the publisher debounces per user)."""

from __future__ import annotations

import logging
from typing import Any

from core.events import FeedTrigger, encode
from core.secrets import kafka_options
from core.settings import Settings
from core.topics import INTERACTIONS, Topics
from feature_store.archive import ParquetArchive

log = logging.getLogger(__name__)


def active_users(archive: ParquetArchive, since: float, until: float) -> list[str]:
    return sorted({str(r["user_id"]) for r in archive.iter_events(INTERACTIONS, since, until)})


def _producer_config(settings: Settings) -> dict[str, Any]:
    k = settings.kafka
    cfg: dict[str, Any] = {"bootstrap_servers": k.bootstrap_servers, "client_id": f"{k.client_id}-scheduler",
                           **kafka_options(k)}
    return cfg


def publish_active_users(settings: Settings, archive: ParquetArchive, now: float) -> int:
    users = active_users(archive, now - settings.publisher.active_user_window_s, now)
    if not users:
        return 0
    if not settings.kafka.bootstrap_servers:
        log.warning("publish_active: kafka.bootstrap_servers is not set; %d users skipped", len(users))
        return 0
    from kafka import KafkaProducer

    producer = KafkaProducer(**_producer_config(settings))
    topic = Topics(settings.kafka.topic_prefix).feed_triggers
    try:
        for user in users:
            trigger = FeedTrigger(user_id=user, event_ts=now, reason="scheduled")
            producer.send(topic, key=user.encode(), value=encode(trigger))
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=5)
    return len(users)
