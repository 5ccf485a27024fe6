"""One topic's fetched batches, applied in order, one apply at a time; the batches that queued up
behind an apply are applied together, as one, when it returns.

A batch's fixed cost (its Redis round trips: watermark read, dedupe and state snapshot, script, each
in turn) does not depend on its size. At a paced rate the fetches are small, and applied one by one
they cost more per event than the drain's full batches: the worker fell behind the offered rate
without being CPU-bound and its queue stood at the in-flight bound (seconds of latency). Here an
idle lane applies a batch as soon as it is fetched (small batches, low latency); a lane that is
behind applies everything that waits, up to ``max_records``, in one larger apply (throughput).

Nothing about the guarantees changes: records keep their fetch order (per partition, offsets only
grow), the processor skips what is at or below the watermarks and dedupes by event id across the
whole merged batch as within one, and the offsets of a batch are committed only after its merged
apply and that apply's follow-up are done. The merged batch's topic ids are those of the lookup
started after its last batch was fetched, hence after every one of its records was
(:mod:`streams.incarnation`). On a Redis Cluster a merged apply cut by a crash between shards is
replayed by the next owner in other cuts, mixed with other partitions' records; each shard's applied
offset of a partition only grows (``feature_store.online.writer``), so a replayed prefix cannot move a
shard back below what the crashed apply wrote there.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from streams.decode import RawRecord
from streams.processor import Prepared

FollowUp = Callable[[], Awaitable[None]]
Apply = Callable[[list[RawRecord], Prepared | None], Awaitable[FollowUp]]
Follow = Callable[[FollowUp], Awaitable[None]]


@dataclass
class Queued:
    """A fetched batch of the topic; ``done`` holds its apply's follow-up (shared by the merged
    batches) once the apply returned."""

    records: list[RawRecord]
    prepared: Prepared | None
    done: asyncio.Future[asyncio.Future[None]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class Lane:
    """Applies one topic's batches in order (``apply``), coalescing those that wait; each apply's
    follow-up runs once (``follow``), while the next batches are applied."""

    def __init__(self, apply: Apply, follow: Follow, max_records: int) -> None:
        self.apply, self.follow, self.max_records = apply, follow, max_records
        self.queue: deque[Queued] = deque()
        self.waiting = 0  # records fetched and not yet applied (in the queue or being applied)
        self.applies = 0
        self._task: asyncio.Task[None] | None = None
        self._progress: asyncio.Future[None] | None = None

    def submit(self, records: list[RawRecord],
               prepared: Prepared | None) -> asyncio.Future[asyncio.Future[None]]:
        """Queue a batch; the future resolves once it is applied, to its follow-up's task."""
        q = Queued(records, prepared)
        self.queue.append(q)
        self.waiting += len(records)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
        return q.done

    async def _run(self) -> None:
        while self.queue:
            taken = self.take()
            records, prepared = merge(taken)
            try:
                follow_up = await self.apply(records, prepared)
            except BaseException as exc:  # noqa: BLE001 - handed to every batch of the apply
                for q in taken:
                    q.done.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            finally:
                self.waiting -= len(records)
                if self._progress is not None and not self._progress.done():
                    self._progress.set_result(None)
                self._progress = None
            self.applies += 1
            task = asyncio.ensure_future(self.follow(follow_up))
            for q in taken:
                q.done.set_result(task)

    def progress(self) -> asyncio.Future[None]:
        """Resolves when the current apply returns (ask only while ``waiting``: an idle lane's never
        does)."""
        if self._progress is None or self._progress.done():
            self._progress = asyncio.get_running_loop().create_future()
        return self._progress

    def take(self) -> list[Queued]:
        """The head of the queue and the batches behind it, while they fit in ``max_records``
        (a batch not prepared ahead is applied on its own)."""
        taken = [self.queue.popleft()]
        size = len(taken[0].records)
        while (self.queue and taken[0].prepared is not None and self.queue[0].prepared is not None
               and size + len(self.queue[0].records) <= self.max_records):
            q = self.queue.popleft()
            taken.append(q)
            size += len(q.records)
        return taken


def merge(taken: Sequence[Queued]) -> tuple[list[RawRecord], Prepared | None]:
    """One batch of the records in fetch order, checked as they were, with the last topic-id lookup."""
    if len(taken) == 1:
        return taken[0].records, taken[0].prepared
    preps = [q.prepared for q in taken]
    assert all(p is not None for p in preps)
    last = preps[-1]
    assert last is not None
    for p in preps[:-1]:
        if p is not None and p.ids is not None:
            p.ids.add_done_callback(_retrieve)  # not used: the last lookup covers every record
    checked = [c for p in preps if p is not None for c in p.checked]
    return [r for q in taken for r in q.records], Prepared(checked, last.started, last.ids)


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()
