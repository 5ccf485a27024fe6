"""What the worker writes besides the online state: Feast's online rows (in the handoff child), the
coalescing they share with the event archive (:mod:`streams.archive_child`), and the content vectors
of new items (computed in a child process, so the sentence model never sits in the worker's memory
or on its event loop)."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from core.events import ItemUpsert
from core.features import ITEM_REALTIME, USER_AFFINITY, USER_REALTIME
from core.settings import Settings
from feature_store import transforms as tf
from streams import content
from streams.metrics import WorkerMetrics

log = logging.getLogger(__name__)
States = Callable[[Sequence[str], Sequence[str]],
                  Awaitable[tuple[dict[str, tf.UserState], dict[str, tf.ItemState]]]]
Known = tuple[int, bytes] | None  # a user's newest state bytes in a pending write, with their ts_us


class Coalescer:
    """Runs ``flush`` on everything submitted since the last one, at most once per ``interval_s``
    (from the start of one flush to the next); ``submit`` returns once a flush that covers its items
    succeeded (a failure is raised to every submitter of that flush, who retry). An idle worker
    flushes right away; under load each flush takes what accumulated meanwhile."""

    def __init__(self, flush: Callable[[Any], Awaitable[None]], empty: Callable[[], Any],
                 interval_s: float) -> None:
        self.flush, self.empty, self.interval_s = flush, empty, interval_s
        self.pending = empty()
        self._next: asyncio.Future[None] | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def submit(self, add: Callable[[Any], None]) -> None:
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = asyncio.ensure_future(self._run())
        assert self._wake is not None
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        fut = self._next
        add(self.pending)
        self._wake.set()
        await asyncio.shield(fut)

    async def _run(self) -> None:
        assert self._wake is not None
        last = 0.0
        while True:
            await self._wake.wait()
            await asyncio.sleep(max(0.0, last + self.interval_s - time.monotonic()))
            self._wake.clear()
            last = time.monotonic()
            batch, fut = self.pending, self._next
            self.pending, self._next = self.empty(), None
            try:
                await self.flush(batch)
            except Exception as exc:  # noqa: BLE001 - every waiting batch retries
                if fut is not None:
                    fut.set_exception(exc)
                    fut.exception()
                continue
            if fut is not None:
                fut.set_result(None)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()


class FeatureRows:
    """Feast's online rows of the entities batches touched, written in the background, coalesced
    (:class:`Coalescer`, every ``feast.push_interval_ms`` at most): an entity touched by several
    batches meanwhile gets one row. Users come with the state bytes their batch's plan wrote (the
    newest by the state's ``ts_us``, which grows with every apply, wins) and are decoded once per
    write, at write time: a user in several batches of one interval costs one decode, not one per
    batch (``decode_user`` was 31 % of the handoff child's samples, paced at 6,000 ev/s). Item states,
    merged in Redis, and users' states a batch did not compute are read at write time (after their
    batch was applied), so a row always reflects at least its batch. Feast keeps the newest row
    (``FeastRedisWriter``)."""

    def __init__(self, states: States, feast: Any, tparams: tf.TransformParams, interval_s: float,
                 metrics: WorkerMetrics | None = None) -> None:
        self.states, self.feast, self.tparams, self.metrics = states, feast, tparams, metrics
        self._rows = Coalescer(self._write, lambda: ({}, set()), interval_s)

    async def __call__(self, users: Mapping[str, bytes | None], items: Sequence[str]) -> None:
        """``users``: per user, the state bytes its batch wrote (``tf.encode_user``), or None (read at
        write time)."""
        def add(pending: tuple[dict[str, Known], set[str]]) -> None:
            known, wanted = pending
            for u, raw in users.items():
                if raw is None:
                    known.setdefault(u, None)
                    continue
                old, ts = known.get(u), tf.user_ts_us(raw)
                if old is None or ts >= old[0]:
                    known[u] = (ts, raw)
            wanted.update(items)

        await self._rows.submit(add)

    async def _write(self, pending: tuple[dict[str, Known], set[str]]) -> None:
        users, items = pending
        missing = sorted(u for u, k in users.items() if k is None)
        read, istates = await self.states(missing, sorted(items))
        ustates = [tf.loads_user(k[1], u) for u, k in users.items() if k is not None] + list(read.values())
        rows = {USER_REALTIME.view: [_stamped(tf.project_user_realtime(s), s.ts_us) for s in ustates],
                USER_AFFINITY.view: [_stamped(tf.project_user_affinity(s, params=self.tparams), s.ts_us)
                                     for s in ustates],
                ITEM_REALTIME.view: [_stamped(tf.project_item_realtime(s), s.ts_us)
                                     for s in istates.values()]}
        await self.feast.write(rows)

    async def close(self) -> None:
        await self._rows.close()


def _stamped(row: dict[str, Any], ts_us: int) -> dict[str, Any]:
    """The row with its timestamp in microseconds too (``row_ts_us``: cheaper than the datetime)."""
    row["_ts_us"] = ts_us
    return row


def feast_rows(settings: Settings, client: Any, states: States, metrics: WorkerMetrics) -> FeatureRows | None:
    """The worker's Feast rows (None when ``worker.feature_push`` is off). They are written in Feast's
    layout under ``feast.project`` whether or not ``streamrec features apply`` ran yet: Feast serves
    them once the views are registered."""
    if not settings.worker.feature_push:
        return None
    from feature_store.feast_rows import FeastRedisWriter

    return FeatureRows(states, FeastRedisWriter(client, settings.feast.project),
                       tf.TransformParams.from_settings(settings), settings.feast.push_interval_ms / 1000.0,
                       metrics)


class ItemVectors:
    """Content vectors of item upserts. With the sentence model they are computed in one child
    process (started at the first item batch, kept for the next): item upserts are rare, the model
    costs ~700 MB and ~100 ms per batch of CPU that would otherwise stall the interactions."""

    def __init__(self, use_model: bool) -> None:
        self.use_model = use_model
        self._pool: ProcessPoolExecutor | None = None
        self._local = None if use_model else content.Encoder(False)

    async def start(self) -> None:
        """Load the model in the child now, so that the first item batch does not wait for it."""
        if self.use_model:
            await self._remote([""], [[]])

    async def __call__(self, items: Sequence[ItemUpsert]) -> dict[str, bytes]:
        if not items:
            return {}
        texts, cats = content.inputs(items)
        if self._local is not None:
            vecs = self._local.encode(texts, cats)
        else:
            vecs = await self._remote(texts, cats)
        return {it.item_id: v for it, v in zip(items, vecs, strict=True)}

    async def _remote(self, texts: list[str], cats: list[list[str]]) -> list[bytes]:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=content.start, initargs=(self.use_model,))
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, content.encode, texts, cats)
        except BrokenProcessPool as exc:
            self._pool = None
            raise ConnectionError(f"content encoder process died: {exc}") from exc

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
