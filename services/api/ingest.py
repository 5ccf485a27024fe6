"""The write path shared by every ingest route (events, items, users): the checks the worker would
apply after the model's own validation (timestamps within its skew bounds, the encoded record under
the 64 KiB record limit, the batch length), then a keyed send to the record's topic."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from fastapi import HTTPException

from core.events import MAX_EVENT_BYTES, EventError, Interaction, ItemUpsert, UserUpsert, check_times, encode
from services.api.deps import ApiContext
from services.publisher.kafka_io import NotDelivered

Record = Interaction | ItemUpsert | UserUpsert


def checked(batch: Sequence[Record], ctx: ApiContext, rejected: Callable[[], None]) -> list[bytes]:
    """The encoded records, once the batch length, each record's size and times pass; else a 422
    naming the limit, or the record's index, reason and detail (``rejected()`` counts it)."""
    limit, w = ctx.settings.api.max_batch_events, ctx.settings.worker
    if len(batch) > limit:
        ctx.metrics.refused.labels("batch_too_long").inc()
        raise HTTPException(422, {"reason": "batch_too_long", "detail": f"{len(batch)} records in one "
                                  f"request; at most {limit} allowed (setting api.max_batch_events)"})
    now, payloads = time.time(), []
    for k, record in enumerate(batch):
        payloads.append(encode(record))
        try:
            check_times(record, now, w.max_future_skew_s, w.max_past_skew_s)
            if len(payloads[-1]) > MAX_EVENT_BYTES:
                raise EventError("oversized", f"record is {len(payloads[-1])} bytes encoded, limit "
                                              f"{MAX_EVENT_BYTES}")
        except EventError as exc:
            rejected()
            raise HTTPException(422, {"index": k, "reason": exc.reason, "detail": exc.detail}) from None
    return payloads


def send(ctx: ApiContext, topic: str, keys: Sequence[str], payloads: Sequence[bytes]) -> None:
    """Produce every payload to ``topic`` keyed by its key and wait for the broker; 503 when Kafka is
    not connected yet or refuses (nothing is acknowledged to the client then: it retries)."""
    try:
        ctx.producer.send(topic, [key.encode() for key in keys], payloads, ctx.settings.api.request_timeout_s)
    except NotDelivered as exc:
        raise HTTPException(503, f"kafka did not accept the records ({exc}); retry") from None
