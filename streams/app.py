"""The faust app: topics, the three agents, and the /healthz /readyz /metrics pages.

Each agent is a thin loop: ``take_events`` a batch, hand it to :class:`BatchProcessor`, and only
then let faust ack it. faust's ``take_events`` acks in a ``finally``, even when the loop body is
cancelled, so the batch runs as a shielded task that is always finished (effects durable) before
control returns; a failure that cannot be retried exits the process hard so nothing is acked.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiokafka
import faust
from faust.types import EventT
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis

from core.settings import Settings
from core.topics import INPUT_TOPICS, Topics
from streams.decode import RawRecord
from streams.incarnation import CHECK_INTERVAL_S, IncarnationGuard, KafkaTopicIds
from streams.kafka_errors import describe, is_retryable
from streams.metrics import WorkerMetrics
from streams.processor import BatchProcessor

log = logging.getLogger(__name__)
EXIT_UNAPPLIED = 70


@dataclass
class WorkerState:
    """Shared by agents and pages."""

    redis: Redis
    metrics: WorkerMetrics
    processor: BatchProcessor | None = None
    assigned: bool = False
    inflight: set[asyncio.Task[None]] = field(default_factory=set)


def bound_fetch_wait(max_wait_ms: int) -> None:
    """faust hard-codes ``fetch_max_wait_ms=1500`` for its consumer, and the Tansu broker holds an
    idle fetch for that long, which put ~0.7 s into produce->effect latency. Cap it (this process
    only) at the batch window. The same subclass runs ``before_commit`` (the topic-id check) before
    each offset commit."""
    base = aiokafka.AIOKafkaConsumer
    if getattr(base, "_streamrec_bounded", False):
        return

    class BoundedFetchConsumer(base):  # type: ignore[valid-type, misc]
        _streamrec_bounded = True
        before_commit: Callable[[], Awaitable[bool]] | None = None  # False: skip this commit

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["fetch_max_wait_ms"] = min(int(kwargs.get("fetch_max_wait_ms", 500)), max_wait_ms)
            super().__init__(*args, **kwargs)

        async def commit(self, offsets: Any = None) -> None:
            check = type(self).before_commit
            if check is not None and not await check():
                log.warning("offset commit skipped: the broker did not answer the topic-id check "
                            "(the next commit carries these offsets)")
                return
            await super().commit(offsets)

    aiokafka.AIOKafkaConsumer = BoundedFetchConsumer  # type: ignore[misc]


def create_app(settings: Settings, port: int) -> faust.App:
    k, w = settings.kafka, settings.worker
    bound_fetch_wait(max(10, w.batch_window_ms))
    servers = [f"kafka://{s.strip()}" for s in (k.bootstrap_servers or "").split(",") if s.strip()]
    return faust.App(
        w.group_id, broker=servers, store="memory://", value_serializer="raw", key_serializer="raw",
        datadir=str(settings.data_dir / "faust"), topic_partitions=k.partitions,
        topic_replication_factor=k.replication_factor, consumer_auto_offset_reset="earliest",
        broker_commit_interval=w.commit_interval_s, broker_session_timeout=w.session_timeout_s,
        broker_heartbeat_interval=max(0.3, w.session_timeout_s / 5),
        broker_rebalance_timeout=w.rebalance_timeout_s,
        broker_max_poll_interval=max(30.0, 3 * w.session_timeout_s),
        broker_request_timeout=max(40.0, w.session_timeout_s + 10), broker_client_id=k.client_id,
        web_enabled=True, web_port=port, web_bind=w.host, web_host="127.0.0.1",
        web_router_enabled=False, web_tables_enabled=False,  # cluster layout and table dumps: not ours
        producer_acks=-1, stream_buffer_maxsize=max(4096, 2 * w.batch_size),
        broker_max_poll_records=w.batch_size,
    )


def register(app: faust.App, settings: Settings, state: WorkerState) -> None:
    topics = Topics(settings.kafka.topic_prefix)
    for base in INPUT_TOPICS:
        topic = app.topic(topics.name(base), value_type=bytes, key_type=bytes,
                          partitions=settings.kafka.partitions)
        app.agent(topic, name=f"streamrec.{base}")(_agent(base, settings, state))
    for base in INPUT_TOPICS:  # declared so the DLQ and trigger topics exist with our partitioning
        app.topic(topics.dlq(base), value_type=bytes, partitions=settings.kafka.partitions)
    app.topic(topics.feed_triggers, value_type=bytes, partitions=settings.kafka.partitions)
    _pages(app, state)
    if state.processor is not None:  # dead letters are cut to what this app's producer accepts
        state.processor.dlq_max_bytes = int(app.conf.producer_max_request_size)
    _guard_incarnations(app, settings, state)

    async def on_assigned(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        state.assigned = True

    app.on_rebalance_complete.connect(on_assigned)  # type: ignore[arg-type]


def _guard_incarnations(app: faust.App, settings: Settings, state: WorkerState) -> None:
    """Batches, commits and a timer check the input topics' ids (see :mod:`streams.incarnation`)."""
    k = settings.kafka
    topics = Topics(k.topic_prefix)
    guard = IncarnationGuard([topics.name(b) for b in INPUT_TOPICS], KafkaTopicIds(
        {"bootstrap_servers": k.bootstrap_servers, "client_id": f"{k.client_id}-topic-ids"}))
    if state.processor is not None:
        state.processor.fence = guard.ids
    consumer_class = aiokafka.AIOKafkaConsumer
    if getattr(consumer_class, "_streamrec_bounded", False):
        consumer_class.before_commit = guard.check

    async def check_topic_ids() -> None:
        await guard.check()

    app.timer(CHECK_INTERVAL_S)(check_topic_ids)


def _agent(base: str, settings: Settings, state: WorkerState) -> Any:
    size, within = settings.worker.batch_size, settings.worker.batch_window_ms / 1000.0

    async def agent(stream: Any) -> None:
        async for events in stream.take_events(size, within=within):
            await run_to_completion(state, base, list(events), stream)

    agent.__name__ = f"agent_{base}"
    return agent


async def run_to_completion(state: WorkerState, base: str, events: Sequence[EventT], stream: Any) -> None:
    """Process a batch and wait for it even if this task is cancelled (SIGTERM, rebalance)."""
    records = [_raw(ev) for ev in events]
    task = asyncio.ensure_future(_with_retries(state, base, records))
    state.inflight.add(task)
    task.add_done_callback(state.inflight.discard)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
        except Exception:  # noqa: BLE001, S110 - inspected below, never acked
            pass
    if task.exception() is not None:
        log.critical("batch of %d %s records failed unrecoverably; exiting without ack",
                     len(records), base, exc_info=task.exception())
        os._exit(EXIT_UNAPPLIED)
    _update_lag(state, stream, events)
    if cancelled:
        raise asyncio.CancelledError


async def _with_retries(state: WorkerState, base: str, records: list[RawRecord]) -> None:
    assert state.processor is not None
    delay = 0.1
    while True:
        try:
            await state.processor.process(base, records)
            return
        except Exception as exc:
            if not is_retryable(exc):
                raise
            state.metrics.retries.labels(base).inc()
            log.warning("store/broker unavailable (%s); retrying batch in %.1fs", describe(exc), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def _raw(ev: EventT) -> RawRecord:
    m = ev.message
    value = m.value if isinstance(m.value, bytes | None) else bytes(m.value)
    key = m.key if isinstance(m.key, bytes | None) else bytes(m.key)
    return RawRecord(m.topic, m.partition, m.offset, value, float(m.timestamp or 0.0), key)


def _update_lag(state: WorkerState, stream: Any, events: Sequence[EventT]) -> None:
    last: dict[Any, int] = {}
    for ev in events:
        last[ev.message.tp] = max(last.get(ev.message.tp, -1), ev.message.offset)
    consumer = stream.app.consumer
    for tp, off in last.items():
        try:
            hw = consumer.highwater(tp)
        except Exception:  # noqa: BLE001 - lag is best effort
            continue
        if hw is not None:
            state.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, hw - off - 1))


def _pages(app: faust.App, state: WorkerState) -> None:
    @app.page("/healthz")
    class Health(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok"})

    @app.page("/readyz")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            try:
                await asyncio.wait_for(state.redis.ping(), 1.0)
            except Exception as exc:  # noqa: BLE001 - reported to the caller
                return self.json({"ready": False, "why": f"redis: {exc}"}, status=503)
            if not state.assigned:
                return self.json({"ready": False, "why": "consumer group not joined yet"}, status=503)
            return self.json({"ready": True})

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            body = generate_latest(state.metrics.registry)
            return self.bytes(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])
