"""The eraser process (``python -m services.privacy``): consumes the tenant's ``deletions`` topic and
applies each request to every store (:class:`services.privacy.eraser.Eraser`), recording each store's
progress in the control database; the offset is committed once every store is done, so a request
interrupted half-way is applied again (every step is idempotent). A record that is not a valid
deletion is logged and skipped (it names no subject to erase)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from prometheus_client import CollectorRegistry, Counter

from core.deletions import Deletion, decode_deletion
from core.events import EventError
from core.secrets import kafka_options
from core.settings import Settings
from core.tenancy import control_url
from core.topics import Topics
from services.metadata.access_store import AccessStore
from services.privacy.eraser import Eraser, stores

log = logging.getLogger(__name__)
REGISTRY = CollectorRegistry()  # /metrics of the eraser process
APPLIED = Counter("streamrec_eraser_requests", "deletion requests applied to every store", ["kind"],
                  registry=REGISTRY)
SKIPPED = Counter("streamrec_eraser_skipped", "records of the deletions topic that were not a request",
                  registry=REGISTRY)
CONNECTED = threading.Event()  # readiness: the consumer is up


def make_eraser(settings: Settings) -> tuple[Eraser, KafkaProducer]:
    from feature_store.online.redis_state import redis_client

    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all",
                             client_id=f"{settings.kafka.client_id}-eraser", **kafka_options(settings.kafka))
    return Eraser(settings, redis_client(settings), producer), producer


def apply(eraser: Eraser, access: AccessStore, d: Deletion) -> dict[str, int]:
    tenant = eraser.settings.tenancy.tenant
    access.record_deletion(d.request_id, tenant, d.kind, d.subject_id)  # from `forget --now` or a replay
    return eraser.erase(d, lambda store: access.mark_erased(d.request_id, store, stores(d.kind)))


def consume(settings: Settings, stop: threading.Event, idle_stop_s: float | None = None,
            max_requests: int | None = None) -> int:
    """Apply deletion requests until ``stop`` is set (or, with ``idle_stop_s``, until nothing came for
    that long; or once ``max_requests`` were applied). Returns the number applied."""
    eraser, producer = make_eraser(settings)
    access = AccessStore(control_url(settings))
    consumer = KafkaConsumer(Topics(settings.kafka.topic_prefix).deletions,
                             bootstrap_servers=settings.kafka.bootstrap_servers,
                             group_id=settings.eraser.group_id,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             **kafka_options(settings.kafka))
    applied, idle = 0, 0.0
    CONNECTED.set()
    try:
        while not stop.is_set() and (idle_stop_s is None or idle < idle_stop_s) and \
                (max_requests is None or applied < max_requests):
            batch = consumer.poll(timeout_ms=500)
            records = [r for rs in batch.values() for r in rs]
            idle = idle + 0.5 if not records else 0.0
            for record in records:
                applied += _one(eraser, access, record.value)
            if records:
                consumer.commit()
    finally:
        CONNECTED.clear()
        consumer.close()
        producer.close()
        access.close()
    return applied


def _one(eraser: Eraser, access: AccessStore, raw: Any) -> int:
    try:
        d = decode_deletion(raw or b"")
    except EventError as exc:
        log.error("deletions: skipped a record that is not a deletion request (%s)", exc.reason)
        SKIPPED.inc()
        return 0
    apply(eraser, access, d)
    APPLIED.labels(d.kind).inc()
    return 1
