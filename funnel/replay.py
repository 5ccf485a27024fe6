"""Replay an event log into the in-process online store, pausing at given events.

Items and users are upserted when their timestamp comes; interactions are applied in time order in
batches, through the stream worker's own plans (``MemoryOnline``). At each stop the callback runs
BEFORE the stop's event is applied, so whatever it computes sees exactly the past: the point-in-time
join of the training job, and the "serve at that user's test time" of the evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from core.online import ReplayStore as Store
from funnel.log import Catalog, EventLog

BATCH = 512


class Replay:
    """Applies ``log`` to ``store`` up to any event index, in order; ``advance(i)`` applies every event
    before ``i`` (and the upserts stamped before event ``i``'s time)."""

    def __init__(self, log: EventLog, catalog: Catalog, store: Store, batch: int = BATCH) -> None:
        self.log, self.store, self.batch = log, store, batch
        self.pos = 0
        self._items = sorted(catalog.items, key=lambda it: it.timestamp)
        self._vectors = catalog.vector_bytes()
        self._users = sorted(catalog.users, key=lambda u: u.timestamp)
        self._next_item = self._next_user = 0

    def _upserts_until(self, ts: float) -> None:
        start = self._next_item
        while self._next_item < len(self._items) and self._items[self._next_item].timestamp <= ts:
            self._next_item += 1
        if self._next_item > start:
            chunk = self._items[start:self._next_item]
            self.store.apply_items(chunk, {it.item_id: self._vectors[it.item_id] for it in chunk
                                           if it.item_id in self._vectors})
        start = self._next_user
        while self._next_user < len(self._users) and self._users[self._next_user].timestamp <= ts:
            self._next_user += 1
        if self._next_user > start:
            self.store.apply_users(self._users[start:self._next_user])

    def advance(self, stop: int, until_ts: float | None = None) -> None:
        """Apply events ``[pos, stop)``; upserts stamped at or before ``until_ts`` (default: the time of
        event ``stop``, or of the last event) are in place first."""
        stop = min(stop, len(self.log))
        while self.pos < stop:
            end = min(stop, self.pos + self.batch)
            self._upserts_until(float(self.log.ts[end - 1]))
            self.store.apply_interactions(self.log.interactions(self.pos, end))
            self.pos = end
        limit = until_ts if until_ts is not None else (
            float(self.log.ts[stop]) if stop < len(self.log) else float("inf"))
        self._upserts_until(limit)

    def run(self, stops: Iterable[int], on_stop: Callable[[int], None]) -> None:
        """For each stop (ascending event indices): advance to it, then ``on_stop(index)``."""
        for stop in np.unique(np.fromiter(stops, np.int64)):
            self.advance(int(stop))
            on_stop(int(stop))
