"""Per-item state every feed request reads, kept in the process as columns for a bounded time.

Each of a feed's ~500 candidates needs its Feast item row and its scores in the two popularity epochs.
Read from Redis per request, that is ~1,500 members packed, sent, parsed and decoded per feed, and
most candidates (the shared popular, trending and fresh lists, the popular items of every ANN answer)
are the same from one request to the next. :class:`ItemColumns` keeps what a read returned, one row
per item: a request reads from Redis only the candidates whose row is older than
``retrieval.item_state_max_age_s`` (or was read in an earlier popularity epoch, or never), and takes
the others from here. Values are the ones a read returned, decayed to the request's clock exactly as a
fresh read is: a feed differs from one over fresh reads only by writes of the last ``max_age`` seconds.
The eraser's deletions (``forget``) mark their rows stale at once.

Rows are appended, never moved; when the columns are full the store starts a new :class:`ItemColumns`
(a request keeps the instance it started with). Concurrent requests may rewrite the same row: each
writes a complete read, and the timestamp last.

Example:
    >>> cols = ItemColumns(4)
    >>> rows = cols.locate(["a", "b", "a"])
    >>> rows.tolist(), cols.stale_positions(rows, epoch=7, fresh_after=0.0).tolist()
    ([0, 1, 0], [0, 1])
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from core.online import F32
from core.protocols import Features
from feature_store.online import views

Rows = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
EPOCHS = 2  # views.epochs: the current popularity epoch and the one before


class ItemColumns:
    """Feast item rows and popularity-epoch scores of up to ``capacity`` items, with when they were read
    (``time.monotonic``) and in which epoch."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._row: dict[str, int] = {}
        self._lock = threading.Lock()
        self.feast: list[Features] = [{} for _ in range(capacity)]
        self.pop = np.zeros((capacity, EPOCHS), np.float64)
        self.epoch = np.full(capacity, -1, np.int64)
        self.read_at = np.full(capacity, -np.inf, np.float64)

    def locate(self, item_ids: Sequence[str]) -> Rows | None:
        """Each id's row (new ids get one, unread), or None when the columns are full."""
        return locate(self._row, self._lock, self.capacity, item_ids)

    def stale_positions(self, rows: Rows, epoch: int, fresh_after: float) -> npt.NDArray[np.intp]:
        """Positions (into ``rows``) of the rows to read again, each row once (its first position):
        read before ``fresh_after``, in another epoch than ``epoch``, or never."""
        mask = (self.read_at[rows] < fresh_after) | (self.epoch[rows] != epoch)
        return _first_each(rows, np.flatnonzero(mask))

    def store(self, rows: Rows, scores: Sequence[F64], feast: Sequence[Features], epoch: int,
              read_at: float) -> None:
        """What one read returned for ``rows`` (distinct): per epoch its scores, and the Feast rows.
        ``read_at`` -inf: used by this request only (a deletion was heard during the read)."""
        self.pop[rows] = np.stack(scores, axis=1)
        feast_col = self.feast
        for row, value in zip(rows.tolist(), feast, strict=True):
            feast_col[row] = value
        self.epoch[rows] = epoch
        self.read_at[rows] = read_at

    def popularity(self, rows: Rows, epochs: Sequence[int], now: float, half_life_s: float) -> F32:
        """The decayed popularity of ``rows`` at ``now`` (as ``views.decayed_arrays`` of a fresh read)."""
        block = self.pop[rows]
        return views.decayed_arrays([(e, block[:, k]) for k, e in enumerate(epochs)], now, half_life_s,
                                    len(rows))

    def feast_rows(self, rows: Rows) -> list[Features]:
        return list(map(self.feast.__getitem__, rows.tolist()))

    def forget(self, item_ids: Collection[str]) -> None:
        """The eraser deleted these items: the next request reads their state again."""
        rows = [r for r in map(self._row.get, item_ids) if r is not None]
        if rows:
            self.read_at[np.array(rows, np.int64)] = -np.inf


class CountColumns:
    """One segment's bandit counts (impressions, clicks) of up to ``capacity`` items, with when they
    were read (``time.monotonic``): what ``RedisOnlineState.posteriors`` keeps for
    ``retrieval.shared_cache_ttl_s`` (counts only grow), as rows instead of a tuple per item in a dict,
    so a request's ~550 lookups are one ``fromiter`` and its posteriors a fancy index."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._row: dict[str, int] = {}
        self._lock = threading.Lock()
        self.counts = np.zeros((capacity, 2), np.float64)
        self.read_at = np.full(capacity, -np.inf, np.float64)

    def locate(self, item_ids: Sequence[str]) -> Rows | None:
        """Each id's row (new ids get one, never read), or None when the columns are full."""
        return locate(self._row, self._lock, self.capacity, item_ids)

    def stale_positions(self, rows: Rows, fresh_after: float) -> npt.NDArray[np.intp]:
        """Positions (into ``rows``) of the rows read before ``fresh_after`` (or never), each row's
        first position only, in order."""
        return _first_each(rows, np.flatnonzero(self.read_at[rows] < fresh_after))

    def store(self, rows: Rows, counts: F64, read_at: float) -> None:
        """A read's (impressions, clicks) of ``rows`` (distinct); the time last."""
        self.counts[rows] = counts
        self.read_at[rows] = read_at


def _first_each(rows: Rows, pos: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
    """``pos`` (positions into ``rows``, ascending) with each row kept at its first position only."""
    if len(pos) > 1:
        _, first = np.unique(rows[pos], return_index=True)
        if len(first) < len(pos):
            pos = pos[np.sort(first)]
    return pos


def locate(row_of: dict[str, int], lock: threading.Lock, capacity: int,
           item_ids: Sequence[str]) -> Rows | None:
    """Each id's row in ``row_of`` (a new id gets the next one, under ``lock``), or None when
    ``capacity`` rows are taken: one C-level lookup per id when all are known."""
    rows = np.fromiter(map(row_of.get, item_ids, itertools.repeat(-1)), np.int64, len(item_ids))
    new = np.flatnonzero(rows < 0)
    if len(new):
        with lock:
            for j in new.tolist():
                iid = item_ids[j]
                row = row_of.get(iid)
                if row is None:
                    if len(row_of) >= capacity:
                        return None
                    row = row_of[iid] = len(row_of)
                rows[j] = row
    return rows


def epoch_scores(ids: Sequence[str], epochs: list[int], parts: dict[int, list[str]],
                 replies: Sequence[Any]) -> list[npt.NDArray[np.float64]]:
    """Per epoch, the ZMSCORE replies (``parts``' commands, epoch-major) as scores aligned with ``ids``
    (distinct; 0.0 where a member has no score)."""
    res, out = iter(replies), []
    flat = [i for group in parts.values() for i in group]  # the replies' member order (per epoch)
    take = positions(flat, ids)
    for _ in epochs:
        values = list(itertools.chain.from_iterable(itertools.islice(res, len(parts))))
        if len(values) != len(flat):
            raise ValueError(f"ZMSCORE answered {len(values)} scores for {len(flat)} items")
        scores = np.array([0.0 if v is None else float(v) for v in values], np.float64)
        out.append(scores if take is None else scores[take])
    return out


def positions(flat: Sequence[str], ids: Sequence[str]) -> npt.NDArray[np.int64] | None:
    """Where each of ``ids`` is in ``flat`` (distinct), or None when they are the same list."""
    if len(flat) == len(ids) and list(flat) == list(ids):
        return None
    where = dict(zip(flat, range(len(flat)), strict=True))
    return np.fromiter(map(where.__getitem__, ids), np.int64, len(ids))
