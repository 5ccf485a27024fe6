"""The worker's consumer: batches from Kafka, applied in order, committed once durable.

One aiokafka consumer in the worker's group reads the three input topics; each fetch (up to
``worker.batch_size`` records, waiting at most ``worker.batch_window_ms``) is split by topic and handed
to :class:`BatchProcessor` (effects durable when it returns). The batch's follow-up (archive, Feast
rows, feed triggers) then runs while the next batches are applied; a batch's offsets are committed
once it and every batch before it are done. Nothing is ever acknowledged early: a crash replays from
the last commit and the watermarks in Redis make the replay a no-op. A batch is prepared (decoded,
validated, its topic-id lookup started) as soon as it is fetched, while the topic's previous batch is
still being applied; it is applied after that one, together with every batch of the topic that queued
up meanwhile (:mod:`streams.lanes`).

(A faust agent costs ~110 us of Python per event before any work, measured on a do-nothing agent,
more than the whole budget at 10,000 events/s; a batch fetch costs ~1.5 us per record.)

Rebalances: before partitions are revoked, the in-flight batches finish and their offsets are
committed; the writer's cached shard offsets are dropped. A zombie that keeps going anyway is fenced
by the guards in Redis (``feature_store.online.writer``). Topic incarnations are checked per batch,
before each commit and every second (:mod:`streams.incarnation`).

``/healthz``, ``/readyz`` (Redis answers, partitions assigned) and ``/metrics`` are served on
``worker.host``:``worker.metrics_port``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core.secrets import kafka_options as secure_kafka
from core.settings import Settings
from core.topics import INPUT_TOPICS, Topics
from feature_store.online.resp import Target, command
from streams.decode import RawRecord
from streams.incarnation import CHECK_INTERVAL_S, IncarnationGuard
from streams.kafka_errors import describe, is_retryable
from streams.lanes import Lane
from streams.metrics import WorkerMetrics
from streams.processor import BatchProcessor, Prepared

log = logging.getLogger(__name__)
EXIT_UNAPPLIED = 70
# Records fetched and not yet applied, times worker.batch_size: the fetch waits beyond it. The lane
# of a topic applies what waits as one batch (streams.lanes), so this bounds the queueing delay to
# about one large apply. (A bound on all in-flight records, 4 x batch_size, held the loop to its
# follow-ups, which wait on coalesced writes: the archive's every 0.5 s.)
MAX_WAITING_RECORDS = 4
# Applied batches whose follow-up (archive, Feast rows, triggers) is still running: memory bounds.
MAX_IN_FLIGHT_RECORDS = 16  # times worker.batch_size
MAX_IN_FLIGHT_BATCHES = 256
# The batches of a topic waiting behind its current apply are applied as one, up to this many
# records (times worker.batch_size): see streams.lanes.
MAX_APPLY_RECORDS = 4


@dataclass
class Work:
    """One applied batch: its last offset per partition and its follow-up."""

    offsets: dict[TopicPartition, int]
    task: asyncio.Future[Any] | None = None
    records: int = 0


@dataclass
class WorkerState:
    """Shared by the loop, the rebalance listener and the pages."""

    redis: Target
    metrics: WorkerMetrics
    processor: BatchProcessor | None = None
    assigned: bool = False
    in_flight: deque[Work] = field(default_factory=deque)
    stopping: bool = False


def kafka_options(settings: Settings) -> dict[str, Any]:
    """Connection options of every Kafka client of the worker (security included)."""
    k = settings.kafka
    return {"bootstrap_servers": k.bootstrap_servers, "client_id": k.client_id,
            **secure_kafka(k, aio=True)}


def kafka_python_options(settings: Settings) -> dict[str, Any]:
    """The same for the worker's kafka-python clients (admin, topic ids): TLS as files."""
    k = settings.kafka
    return {"bootstrap_servers": k.bootstrap_servers, "client_id": k.client_id, **secure_kafka(k)}


def consumer(settings: Settings, listener: ConsumerRebalanceListener) -> AIOKafkaConsumer:
    w = settings.worker
    session_ms = int(w.session_timeout_s * 1000)
    c = AIOKafkaConsumer(
        group_id=w.group_id, enable_auto_commit=False, auto_offset_reset="earliest",
        max_poll_records=w.batch_size, fetch_max_wait_ms=max(10, w.batch_window_ms),
        session_timeout_ms=session_ms, heartbeat_interval_ms=max(300, session_ms // 5),
        rebalance_timeout_ms=int(w.rebalance_timeout_s * 1000),
        max_poll_interval_ms=max(30_000, 3 * session_ms),
        request_timeout_ms=max(40_000, session_ms + 10_000), **kafka_options(settings))
    topics = Topics(settings.kafka.topic_prefix)
    c.subscribe([topics.name(b) for b in INPUT_TOPICS], listener=listener)
    return c


def producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(acks="all", linger_ms=2, max_request_size=1_000_000, **kafka_options(settings))


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: ConsumerLoop) -> None:
        self.loop = loop

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        await self.loop.drain()  # every batch fetched so far is applied, followed up and committed
        await self.loop.commit(force=True)
        self.loop.state.assigned = False

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        assert self.loop.state.processor is not None
        self.loop.state.processor.writer.forget()
        self.loop.state.assigned = True


class ConsumerLoop:
    """Fetch, split by topic, apply, follow up, commit."""

    def __init__(self, settings: Settings, state: WorkerState, guard: IncarnationGuard) -> None:
        self.settings, self.state, self.guard = settings, state, guard
        self.topics = Topics(settings.kafka.topic_prefix)
        self.base = {self.topics.name(b): b for b in INPUT_TOPICS}
        self.consumer = consumer(settings, Rebalance(self))
        self._committed_at = 0.0
        self._done: dict[TopicPartition, int] = {}
        self.lanes: dict[str, Lane] = {}  # per topic: its batches, applied in order (coalesced)

    async def run(self) -> None:
        await self.consumer.start()
        size = self.settings.worker.batch_size
        try:
            while not self.state.stopping:
                batch = await self.consumer.getmany(timeout_ms=200, max_records=size)
                if batch:
                    await self._handle(batch)
                await self.commit()
            await self.drain()
            await self.commit(force=True)
        finally:
            await self.consumer.stop()

    async def _handle(self, batch: dict[TopicPartition, list[Any]]) -> None:
        """Queue each topic's records behind that topic's previous batches (applies stay in order per
        topic, while a slow item batch, waiting on its content vectors, does not hold up the
        interactions); the batch is done when every part is applied and followed up."""
        by_base: dict[str, list[RawRecord]] = {}
        offsets: dict[TopicPartition, int] = {}
        for tp, msgs in batch.items():
            by_base.setdefault(self.base[tp.topic], []).extend(_raw(m) for m in msgs)
            offsets[tp] = msgs[-1].offset
        # prepared (decoded, validated, topic-id lookup started) and queued now, in fetch order
        parts = [_part(self._lane(base).submit(records, self._prepare(base, records)))
                 for base, records in by_base.items()]
        work = Work(offsets, asyncio.ensure_future(asyncio.gather(*parts)), sum(map(len, batch.values())))
        self.state.metrics.fetch_records.observe(work.records)
        self.state.in_flight.append(work)
        self._update_lag(offsets)
        while bound := self._over_bound():
            head = self.state.in_flight[0].task
            assert head is not None
            t = time.monotonic()
            await asyncio.wait([head, *(lane.progress() for lane in self.lanes.values() if lane.waiting)],
                               return_when=asyncio.FIRST_COMPLETED)
            self.state.metrics.fetch_blocked.labels(bound).inc(time.monotonic() - t)
            self._collect()

    def _lane(self, base: str) -> Lane:
        if base not in self.lanes:
            size = MAX_APPLY_RECORDS * self.settings.worker.batch_size
            self.lanes[base] = Lane(lambda records, prep: self._apply(base, records, prep), self._follow,
                                    size)
        return self.lanes[base]

    async def _follow(self, follow_up: Callable[[], Awaitable[None]]) -> None:
        await _retrying(self.state.metrics, "follow_up", follow_up)

    def _prepare(self, base: str, records: list[RawRecord]) -> Prepared | None:
        """Decode, validate and start the topic-id lookup now; None if that failed unexpectedly:
        ``process`` then does it again in its turn, where a failure is handled as before."""
        try:
            return self._processor().prepare(base, records)
        except Exception:  # noqa: BLE001 - raised again, in order, by process
            log.debug("%s batch not prepared ahead", base, exc_info=True)
            return None

    async def _apply(self, base: str, records: list[RawRecord],
                     prepared: Prepared | None) -> Callable[[], Awaitable[None]]:
        return await _retrying(self.state.metrics, base,
                               lambda: self._processor().process(base, records, prepared))

    def _processor(self) -> BatchProcessor:
        assert self.state.processor is not None
        return self.state.processor

    def _over_bound(self) -> str:
        """The bound the fetch waits on ("" for none): records not yet applied ("apply"), or
        batches whose follow-up is not done ("follow_up")."""
        q, size = self.state.in_flight, self.settings.worker.batch_size
        if len(q) <= 1:
            return ""
        if sum(lane.waiting for lane in self.lanes.values()) > MAX_WAITING_RECORDS * size:
            return "apply"
        if len(q) > MAX_IN_FLIGHT_BATCHES or sum(w.records for w in q) > MAX_IN_FLIGHT_RECORDS * size:
            return "follow_up"
        return ""

    def _collect(self) -> None:
        """Move finished batches (in order) to the offsets to commit; exit if one failed for good."""
        q = self.state.in_flight
        while q and q[0].task is not None and q[0].task.done():
            work = q.popleft()
            assert work.task is not None
            if work.task.exception() is not None:
                log.critical("a batch's follow-up failed unrecoverably; exiting without commit",
                             exc_info=work.task.exception())
                logging.shutdown()
                os._exit(EXIT_UNAPPLIED)
            self._done.update(work.offsets)

    async def drain(self) -> None:
        for work in list(self.state.in_flight):
            if work.task is not None:
                await asyncio.wait([work.task])
        self._collect()

    async def commit(self, force: bool = False) -> None:
        self._collect()
        due = time.monotonic() - self._committed_at >= self.settings.worker.commit_interval_s
        if not self._done or not (force or due):
            return
        if not await self.guard.check():
            log.warning("offset commit skipped: the broker did not answer the topic-id check")
            return
        offsets = {tp: OffsetAndMetadata(off + 1, "") for tp, off in self._done.items()}
        try:
            await self.consumer.commit(offsets)
        except Exception as exc:  # noqa: BLE001 - a lost generation: the next owner replays (no-op)
            log.warning("offset commit failed (%s); the next owner replays these batches", describe(exc))
        self._done.clear()
        self._committed_at = time.monotonic()

    def _update_lag(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, off in offsets.items():
            hw = self.consumer.highwater(tp)
            if hw is not None:
                self.state.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, hw - off - 1))


async def _retrying(metrics: WorkerMetrics, what: str, step: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``step`` until it succeeds; an error that cannot be retried exits without commit."""
    delay = 0.1
    while True:
        try:
            return await step()
        except Exception as exc:
            if not is_retryable(exc):
                log.critical("%s failed unrecoverably; exiting without commit", what, exc_info=exc)
                logging.shutdown()
                os._exit(EXIT_UNAPPLIED)
            metrics.retries.labels(what).inc()
            log.warning("store/broker unavailable (%s); retrying %s in %.1fs", describe(exc), what, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def _part(applied: asyncio.Future[asyncio.Future[None]]) -> None:
    """A batch's part of one topic: applied (maybe with the batches queued beside it), followed up."""
    await (await applied)


def _raw(m: Any) -> RawRecord:
    return RawRecord(m.topic, m.partition, m.offset, m.value, (m.timestamp or 0) / 1000.0, m.key)


async def timer(guard: IncarnationGuard, state: WorkerState) -> None:
    """An idle worker notices a new topic incarnation too."""
    while not state.stopping:
        await guard.check()
        await asyncio.sleep(CHECK_INTERVAL_S)


def web_app(state: WorkerState) -> web.Application:
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready(request: web.Request) -> web.Response:
        try:
            (pong,) = await asyncio.wait_for(state.redis.execute([command(None, "PING")]), 1.0)
            if not (pong == b"PONG" or pong == "PONG"):
                raise ConnectionError(str(pong))
        except Exception as exc:  # noqa: BLE001 - reported to the caller
            return web.json_response({"ready": False, "why": f"redis: {exc}"}, status=503)
        if not state.assigned:
            return web.json_response({"ready": False, "why": "consumer group not joined yet"}, status=503)
        return web.json_response({"ready": True})

    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(state.metrics.registry)
        return web.Response(body=body, content_type=CONTENT_TYPE_LATEST.split(";")[0])

    app = web.Application()
    app.router.add_get("/healthz", health)
    app.router.add_get("/readyz", ready)
    app.router.add_get("/metrics", metrics)
    return app
