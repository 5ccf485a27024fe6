"""One batch of one input topic, end to end, in the order that makes it effectively once:

1. skip records at or below the partition's watermark (a replay after a crash). Watermarks are kept
   per topic incarnation (``topic@<topic id>``, see :mod:`streams.incarnation`), so a broker that
   comes back empty, with offsets from 0 again, never makes new events look replayed;
2. validate; invalid records go to ``<topic>.dlq`` (delivery awaited). A record whose dead letter the
   broker refuses for good is logged with its coordinates, counted and skipped; a broker that is
   down is retried;
3. dedupe by event id, plan and apply effects, dedupe markers, stats and watermarks
   (``OnlineWriter``: guarded Lua scripts; a guard that moved means another worker got there first,
   and the batch is read and planned again).

:meth:`BatchProcessor.process` returns once the effects are durable. It hands back the batch's
follow-up (archive, Feast rows of every entity the batch touched, replayed ones too, then feed
triggers), which the consumer runs while it applies the next batches and awaits before it commits
the batch's offsets.

What does not depend on the state the previous batch of the topic wrote is done ahead, by
:meth:`BatchProcessor.prepare`, as soon as the batch is fetched: decoding and validating its records
and the topic-id lookup of step 1 (started after the fetch, as before). The consumer prepares batch
k+1 while batch k's Redis round trips run; steps 1-3 (watermarks, dead letters, dedupe, plan, apply)
stay after batch k is applied, in order per topic.
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
from core.events import EventError, Interaction, ItemUpsert
from core.topics import INTERACTIONS, ITEMS, USERS, Topics
from feature_store.online.writer import TP, Applied, Conflict, Coord, OnlineWriter, StatsDelta
from iokit.dead_letters import DEFAULT_MAX_REQUEST_BYTES, Outgoing, build
from streams.decode import RawRecord, Skew, validate
from streams.incarnation import incarnated
from streams.kafka_errors import describe, is_retryable, root
from streams.metrics import WorkerMetrics

log = logging.getLogger(__name__)
LATENCY_SAMPLE = 4  # every 4th record of a batch is observed in effect_latency
Send = Callable[[str, bytes | None, bytes], Awaitable[Awaitable[Any]]]
# (partition, offset, the record's bytes as consumed) and the categories planning saw: the archive
# decodes and writes them in another process (streams.archive_child; in tests its ArchiveWriter)
ArchiveRow = tuple[int, int, bytes]
Archive = Callable[[str, Sequence[ArchiveRow], Mapping[str, list[str]] | None], Awaitable[None]]
Vectors = Callable[[Sequence[ItemUpsert]], Awaitable[dict[str, bytes]]]
Fence = Callable[[float], Awaitable[Mapping[str, str]]]  # monotonic time -> topic ids checked since
# users (the state bytes the batch wrote, or None), items, triggers (user -> newest event time):
# rows then triggers, done in another process (streams.handoff; in tests handoff_child.Child in process)
Handoff = Callable[[Mapping[str, bytes | None], Sequence[str], Mapping[str, float]], Awaitable[None]]


@dataclass
class Prepared:
    """A batch's records decoded and validated (per record: its event, or the EventError that rejects
    it, checked against the clock at ``prepare``), and its topic-id lookup, started once fetched."""

    checked: list[Any]
    started: float  # monotonic: the lookup reports ids at or after this
    ids: asyncio.Future[Mapping[str, str]] | None = None


@dataclass
class Parsed:
    new: list[tuple[RawRecord, Any]]
    replayed: list[tuple[RawRecord, Any]]
    dead: list[Outgoing]
    offsets: dict[TP, int]
    marks: dict[TP, int]
    coords: dict[int, Coord] = field(default_factory=dict)  # id(record) -> coordinates
    redelivered: int = 0  # records at or below the watermark, valid or not


class BatchProcessor:
    """Transport-free batch logic; the consumer feeds it ``RawRecord`` lists."""

    def __init__(self, topics: Topics, writer: OnlineWriter, send: Send, metrics: WorkerMetrics,
                 skew: Skew, vectors: Vectors | None = None, archive: Archive | None = None,
                 handoff: Handoff | None = None, clock: Callable[[], float] = time.time) -> None:
        self.topics, self.writer, self.send, self.metrics = topics, writer, send, metrics
        self.skew, self.vectors, self.archive, self.clock = skew, vectors, archive, clock
        self.handoff = handoff  # Feast rows and feed triggers (None: neither)
        self.dlq_max_bytes = DEFAULT_MAX_REQUEST_BYTES  # the producer's max_request_size (app sets it)
        self.fence: Fence | None = None  # topic ids of the input topics (app sets it)

    def prepare(self, base: str, records: Sequence[RawRecord]) -> Prepared:
        """The work that does not read the state earlier batches write (see the module docstring)."""
        started, now = time.monotonic(), self.clock()
        checked = [_checked(base, rec.value, now, self.skew) for rec in records]
        ids = asyncio.ensure_future(self.fence(started)) if self.fence is not None else None
        return Prepared(checked, started, ids)

    async def process(self, base: str, records: Sequence[RawRecord],
                      prepared: Prepared | None = None) -> Callable[[], Awaitable[None]]:
        """Apply the batch (``prepared``: by :meth:`prepare`, from the same records); returns its
        follow-up (see the module docstring)."""
        started = time.monotonic()
        prep = prepared if prepared is not None else self.prepare(base, records)
        clock = _PhaseClock(self.metrics, base)
        while True:
            ids = await self._ids(prep)
            parsed = await self._parse(records, prep.checked, ids)
            sent = await self._dead_letter(base, parsed.dead)
            clock.lap("parse_dlq")
            stats = StatsDelta(base, len(parsed.new), len(sent), dict(Counter(d.reason for d in sent)),
                               skipped=len(parsed.dead) - len(sent), replayed=parsed.redelivered)
            try:
                applied = await self._apply(base, parsed, stats)
                break
            except Conflict as exc:
                self.metrics.retries.labels(base).inc()
                log.info("%s batch re-planned: %s", base, exc)
        clock.lap("apply")
        self._observe(base, parsed, stats, records, started)
        return lambda: self._follow_up(base, parsed, applied)

    async def _ids(self, prep: Prepared) -> Mapping[str, str]:
        """The lookup ``prepare`` started; again (served by any lookup since) on a retried batch."""
        if self.fence is None:
            return {}
        task, prep.ids = prep.ids, None
        return await (task if task is not None else self.fence(prep.started))

    async def _parse(self, records: Sequence[RawRecord], checked: Sequence[Any],
                     ids: Mapping[str, str]) -> Parsed:
        """``checked``: by ``prepare``; ``ids``: the topic ids the broker reported after these
        records were fetched."""
        names = {t: incarnated(t, ids.get(t)) for t in {r.topic for r in records}}
        marks = await self.writer.watermarks(sorted({(names[r.topic], r.partition) for r in records}))
        out = Parsed([], [], [], {}, marks)
        for rec, ev in zip(records, checked, strict=True):
            tp = names[rec.topic], rec.partition
            replay = rec.offset <= marks[tp]
            out.redelivered += replay
            if isinstance(ev, EventError):
                if not replay:
                    out.dead.append(build(rec, ev, self.dlq_max_bytes))
                    out.offsets[tp] = max(out.offsets.get(tp, -1), rec.offset)
                continue
            if replay:
                out.replayed.append((rec, ev))
            else:
                out.new.append((rec, ev))
                out.coords[id(ev)] = Coord(tp, rec.offset)
                out.offsets[tp] = max(out.offsets.get(tp, -1), rec.offset)
        return out

    async def _apply(self, base: str, parsed: Parsed, stats: StatsDelta) -> Applied | None:
        pairs = [(parsed.coords[id(ev)], ev) for _, ev in parsed.new]
        if base == INTERACTIONS:
            applied = await self.writer.apply_interactions(pairs, parsed.offsets, parsed.marks, stats)
            self.metrics.events.labels(INTERACTIONS, "duplicate").inc(applied.duplicates)
            return applied
        if base == ITEMS:
            items = [ev for _, ev in pairs]
            live = [it for it in items if it.active]  # a deactivated (or erased) item keeps no new vector
            vecs = await self.vectors(live) if self.vectors and live else {}
            await self.writer.apply_items(pairs, vecs, parsed.offsets, parsed.marks, stats)
        else:
            await self.writer.apply_users([ev for _, ev in pairs], parsed.offsets, parsed.marks, stats)
        return None

    async def _follow_up(self, base: str, parsed: Parsed, applied: Applied | None) -> None:
        """The archive, and meanwhile Feast rows then feed triggers (a trigger asks for a feed built
        on those rows)."""
        await asyncio.gather(self._archive(base, parsed, applied),
                             self._rows_then_triggers(base, parsed, applied))

    async def _rows_then_triggers(self, base: str, parsed: Parsed, applied: Applied | None) -> None:
        """Per user the state bytes the plan wrote (None for replayed users: read at write time), the
        items touched and, of interactions, per user the newest event time, to ``handoff``."""
        events = [ev for _, ev in parsed.new] + [ev for _, ev in parsed.replayed]
        if self.handoff is None or base == USERS or not events:
            return
        clock = _PhaseClock(self.metrics, base)
        known = applied.user_bytes if applied is not None else {}
        users = {e.user_id: known.get(e.user_id) for e in events if isinstance(e, Interaction)}
        items = sorted({e.item_id for e in events if isinstance(e, Interaction | ItemUpsert)})
        await self.handoff(users, items, _latest(events) if base == INTERACTIONS else {})
        clock.lap("features")

    async def _archive(self, base: str, parsed: Parsed, applied: Applied | None) -> None:
        """Fresh records (and those a crashed attempt applied) with the categories planning saw;
        records replayed after a crash again (same file names: idempotent)."""
        if self.archive is None:
            return
        if applied is None:
            pairs = parsed.new + parsed.replayed
            await self.archive(base, _rows(pairs), None) if pairs else None
            return
        keep = {id(ev) for ev in applied.fresh + applied.earlier}
        fresh = [(rec, ev) for rec, ev in parsed.new if id(ev) in keep]
        if fresh:
            await self.archive(base, _rows(fresh), applied.categories)
        if parsed.replayed:
            cats = await self.writer.categories(sorted({ev.item_id for _, ev in parsed.replayed}))
            await self.archive(base, _rows(parsed.replayed), cats)

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

    def _observe(self, base: str, parsed: Parsed, stats: StatsDelta, records: Sequence[RawRecord],
                 started: float) -> None:
        m = self.metrics
        m.events.labels(base, "applied").inc(len(parsed.new))
        m.events.labels(base, "replayed").inc(len(parsed.replayed))
        m.events.labels(base, "dead_lettered").inc(stats.dead_lettered)
        m.events.labels(base, "skipped").inc(stats.skipped)
        m.batch_seconds.labels(base).observe(time.monotonic() - started)
        m.apply_records.labels(base).observe(len(records))
        now = self.clock()
        hist = m.effect_latency.labels(base)
        for rec in records[::LATENCY_SAMPLE]:  # a uniform sample: the same distribution, 1/4 the cost
            if rec.timestamp:
                hist.observe(max(0.0, now - rec.timestamp))


def _rows(pairs: Sequence[tuple[RawRecord, Any]]) -> list[ArchiveRow]:
    return [(rec.partition, rec.offset, rec.value or b"") for rec, _ in pairs]


def _latest(events: Sequence[Any]) -> dict[str, float]:
    """The feed triggers of a batch: per user, the newest interaction time."""
    latest: dict[str, float] = {}
    for ev in events:
        if isinstance(ev, Interaction):
            latest[ev.user_id] = max(latest.get(ev.user_id, 0.0), ev.timestamp)
    return latest


def _checked(base: str, raw: bytes | None, now: float, skew: Skew) -> Any:
    """The record's event, or the EventError that rejects it."""
    try:
        return validate(base, raw, now, skew)
    except EventError as err:
        return err


class _PhaseClock:
    def __init__(self, metrics: WorkerMetrics, agent: str) -> None:
        self.metrics, self.agent, self.t = metrics, agent, time.monotonic()

    def lap(self, phase: str) -> None:
        now = time.monotonic()
        self.metrics.phase_seconds.labels(self.agent, phase).observe(now - self.t)
        self.t = now
