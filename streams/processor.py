"""One batch of one input topic, end to end, in the order that makes it effectively once:

1. skip records at or below the partition's applied watermark (a replay after a crash). Watermarks
   are kept per topic incarnation (``topic@<topic id>``, see :mod:`streams.incarnation`), so a
   broker that comes back empty, with offsets from 0 again, never makes new events look replayed;
2. validate; invalid records go to ``<topic>.dlq`` (delivery awaited). A record whose dead letter the
   broker refuses for good is logged with its coordinates, counted and skipped; a broker that is
   down is retried;
3. dedupe by event_id, plan and apply effects + dedupe markers + stats + watermarks in ONE Redis
   transaction (the archive is written just before EXEC, idempotently named by offsets);
4. push ABSOLUTE feature rows of every entity the batch touched (replayed ones too) and flush;
5. emit FeedTriggers (delivery awaited). Only then does the agent ack, so offsets are committed
   after the effects they cover are durable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.errors import BrokerUnavailable
from core.events import (
    EventError,
    FeedTrigger,
    Interaction,
    ItemUpsert,
    encode,
)
from core.topics import INTERACTIONS, ITEMS, Topics
from feature_store.online.batch import plan_users
from feature_store.online.writer import OnlineWriter, StatsDelta
from iokit.dead_letters import DEFAULT_MAX_REQUEST_BYTES, Outgoing, build
from streams.content import ItemVectors
from streams.decode import RawRecord, Skew, validate
from streams.incarnation import incarnated
from streams.kafka_errors import describe, is_retryable, root
from streams.metrics import WorkerMetrics

log = logging.getLogger(__name__)
Send = Callable[[str, bytes | None, bytes], Awaitable[Awaitable[Any]]]
Archive = Callable[[str, Sequence[tuple[RawRecord, dict[str, Any]]]], Awaitable[None]]
FeaturePush = Callable[[Mapping[str, list[dict[str, Any]]]], Awaitable[None]]
Fence = Callable[[float], Awaitable[Mapping[str, str]]]  # monotonic time -> topic ids checked since
TP = tuple[str, int]


@dataclass
class Parsed:
    new: list[tuple[RawRecord, Any]]
    replayed: list[Any]
    dead: list[Outgoing]
    offsets: dict[TP, int]
    replayed_records: list[tuple[RawRecord, Any]] = field(default_factory=list)


class BatchProcessor:
    """Transport-free batch logic; the faust agents feed it ``RawRecord`` lists."""

    def __init__(self, topics: Topics, writer: OnlineWriter, send: Send, metrics: WorkerMetrics,
                 skew: Skew, vectors: ItemVectors | None = None, archive: Archive | None = None,
                 push: FeaturePush | None = None, clock: Callable[[], float] = time.time) -> None:
        self.topics, self.writer, self.send, self.metrics = topics, writer, send, metrics
        self.skew, self.vectors, self.archive, self.push, self.clock = skew, vectors, archive, push, clock
        self.dlq_max_bytes = DEFAULT_MAX_REQUEST_BYTES  # the producer's max_request_size (app sets it)
        self.fence: Fence | None = None  # topic ids of the input topics (app sets it)

    async def process(self, base: str, records: Sequence[RawRecord]) -> None:
        started = time.monotonic()
        clock = _PhaseClock(self.metrics, base)
        ids = await self.fence(started) if self.fence is not None else {}
        parsed = await self._parse(base, records, ids)
        sent = await self._dead_letter(base, parsed.dead)
        clock.lap("parse_dlq")
        stats = StatsDelta(base, len(parsed.new), len(sent), dict(Counter(d.reason for d in sent)),
                           skipped=len(parsed.dead) - len(sent))
        events = [ev for _, ev in parsed.new]
        if base == INTERACTIONS:
            await self._interactions(parsed, stats)
        elif base == ITEMS:
            vecs = await self.vectors.encode_async(events) if self.vectors else {}
            await self._archive(base, parsed.new)
            await self.writer.apply_items(events, vecs, parsed.offsets, stats)
        else:
            await self._archive(base, parsed.new)
            await self.writer.apply_plan(plan_users(events, self.writer.keys), parsed.offsets, stats)
        clock.lap("apply")
        everything = events + parsed.replayed
        await self._push_features(base, everything)
        clock.lap("features")
        if base == INTERACTIONS:
            await self._trigger(everything)
        clock.lap("triggers")
        self._observe(base, parsed, stats, records, started)

    async def _parse(self, base: str, records: Sequence[RawRecord], ids: Mapping[str, str]) -> Parsed:
        """``ids``: the topic ids the broker reported after these records were fetched."""
        def tp_of(rec: RawRecord) -> TP:
            return incarnated(rec.topic, ids.get(rec.topic)), rec.partition

        marks = await self.writer.watermarks(sorted({tp_of(r) for r in records}))
        now = self.clock()
        out = Parsed([], [], [], {})
        for rec in records:
            tp = tp_of(rec)
            replay = rec.offset <= marks[tp]
            try:
                ev = validate(base, rec.value, now, self.skew)
            except EventError as err:
                if not replay:
                    out.dead.append(build(rec, err, self.dlq_max_bytes))
                    out.offsets[tp] = max(out.offsets.get(tp, -1), rec.offset)
                continue
            if replay:
                out.replayed.append(ev)
                out.replayed_records.append((rec, ev))
            else:
                out.new.append((rec, ev))
                out.offsets[tp] = max(out.offsets.get(tp, -1), rec.offset)
        return out

    async def _interactions(self, parsed: Parsed, stats: StatsDelta) -> None:
        """The archive write overlaps the Redis transaction; both finish before the batch is acked.
        Records replayed after a crash are archived again (same file names: idempotent)."""
        by_id = {ev.event_id: rec for rec, ev in parsed.new}
        pending: list[asyncio.Task[None]] = []

        async def before_commit(fresh: Sequence[Interaction], cats: Mapping[str, list[str]]) -> None:
            pairs = [(by_id[e.event_id], e) for e in fresh]
            pending.append(asyncio.ensure_future(self._archive(INTERACTIONS, pairs, cats)))

        try:
            applied = await self.writer.apply_interactions(
                [ev for _, ev in parsed.new], parsed.offsets, stats, before_commit)
        finally:
            await asyncio.gather(*pending)
        if parsed.replayed_records:
            cats = await self.writer.categories(sorted({e.item_id for _, e in parsed.replayed_records}))
            await self._archive(INTERACTIONS, parsed.replayed_records, cats)
        if applied.retries:
            self.metrics.retries.labels(INTERACTIONS).inc(applied.retries)
        self.metrics.events.labels(INTERACTIONS, "duplicate").inc(applied.duplicates)

    async def _archive(self, base: str, pairs: Sequence[tuple[RawRecord, Any]],
                       cats: Mapping[str, list[str]] | None = None) -> None:
        if self.archive is None or not pairs:
            return
        rows = []
        for rec, ev in pairs:
            row = ev.model_dump(mode="json")
            if cats is not None:
                row["categories"] = list(cats.get(ev.item_id, []))
            rows.append((rec, row))
        await self.archive(base, rows)

    async def _dead_letter(self, base: str, dead: Sequence[Outgoing]) -> list[Outgoing]:
        """Publish the dead letters (keyed by the original key) and return those delivered. A broker
        that is unreachable raises (the batch is retried); a letter refused for good is skipped."""
        if not dead:
            return []
        topic = self.topics.dlq(base)
        outcomes = await asyncio.gather(*(self._send_letter(topic, d) for d in dead), return_exceptions=True)
        failed = [(d, exc) for d, exc in zip(dead, outcomes, strict=True) if isinstance(exc, BaseException)]
        retry = next((exc for _, exc in failed if is_retryable(exc)), None)
        if retry is not None:
            raise BrokerUnavailable(f"dead-letter topic {topic}: {describe(retry)}") from retry
        for d, exc in failed:
            self._skip(base, d, exc)
        sent = [d for d, exc in zip(dead, outcomes, strict=True) if not isinstance(exc, BaseException)]
        for d in sent:
            self.metrics.dlq.labels(base, d.reason).inc()
        return sent

    async def _send_letter(self, topic: str, d: Outgoing) -> None:
        await (await self.send(topic, d.key, d.value))

    def _skip(self, base: str, d: Outgoing, exc: BaseException) -> None:
        rec = d.record
        log.error("record %s[%d]@%d (key %r, %d bytes, %s) could not be dead-lettered: %s; skipped",
                  rec.topic, rec.partition, rec.offset, (rec.key or b"")[:64], len(rec.value or b""),
                  d.reason, describe(exc))
        self.metrics.dlq_failed.labels(base, type(root(exc)).__name__).inc()

    async def _push_features(self, base: str, events: Sequence[Any]) -> None:
        if self.push is None or base == "users" or not events:
            return
        users = sorted({e.user_id for e in events if isinstance(e, Interaction)})
        items = sorted({e.item_id for e in events if isinstance(e, Interaction | ItemUpsert)})
        await self.push(await self.writer.feature_rows(users, items))

    async def _trigger(self, events: Sequence[Interaction]) -> None:
        latest: dict[str, float] = {}
        for ev in events:
            latest[ev.user_id] = max(latest.get(ev.user_id, 0.0), ev.timestamp)
        topic = self.topics.feed_triggers
        futs = [await self.send(topic, u.encode(), encode(FeedTrigger(user_id=u, event_ts=ts)))
                for u, ts in latest.items()]
        await asyncio.gather(*futs)

    def _observe(self, base: str, parsed: Parsed, stats: StatsDelta, records: Sequence[RawRecord],
                 started: float) -> None:
        m = self.metrics
        m.events.labels(base, "applied").inc(len(parsed.new))
        m.events.labels(base, "replayed").inc(len(parsed.replayed))
        m.events.labels(base, "dead_lettered").inc(stats.dead_lettered)
        m.events.labels(base, "skipped").inc(stats.skipped)
        m.batch_seconds.labels(base).observe(time.monotonic() - started)
        now = self.clock()
        for rec in records:
            if rec.timestamp:
                m.effect_latency.labels(base).observe(max(0.0, now - rec.timestamp))


class _PhaseClock:
    def __init__(self, metrics: WorkerMetrics, agent: str) -> None:
        self.metrics, self.agent, self.t = metrics, agent, time.monotonic()

    def lap(self, phase: str) -> None:
        now = time.monotonic()
        self.metrics.phase_seconds.labels(self.agent, phase).observe(now - self.t)
        self.t = now
