"""Decayed top-k over the sliced popularity sets, kept merged in process (the in-process store's read).

A popular or trending read takes the top ``k`` rows of each of ``SLICES`` slices, for the current
epoch and the one before, and ranks the members by their decayed sum (:func:`views.decayed_top`).
Done from scratch, that merges up to ``2 x SLICES x k`` rows in Python per read: at catalogue scale
(50k items, ``k`` = 1,024) most of a replayed feed's cost. Here each (slice set, epoch, ``k``) keeps
its rows as dense arrays over member ids, and a read re-reads only the slices written since
(``KeySpace.gen``), then weighs the two epochs as arrays. The answer is the one
:func:`views.decayed_top` gives for the same rows: the same products and sums in the same order, the
same order of ties (a test compares them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter

import numpy as np
import numpy.typing as npt

from core.online import Scored
from feature_store.online import decay, views

IDS = npt.NDArray[np.int64]
_NO_IDS: IDS = np.zeros(0, np.int64)
_MEMBER, _SCORE = itemgetter(0), itemgetter(1)


class Members:
    """Member name <-> dense id, in order of first sight."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._ids: dict[str, int] = {}

    def ids(self, rows: views.Rows) -> IDS:
        """The ids of the rows' members, numbering the new ones in order (one C-level lookup per row
        while every member is known, as between two reads of a slice)."""
        try:
            return np.fromiter(map(self._ids.__getitem__, map(_MEMBER, rows)), np.int64, len(rows))
        except KeyError:
            pass
        out = []
        for m in map(_MEMBER, rows):
            i = self._ids.get(m)
            if i is None:
                i = self._ids[m] = len(self.names)
                self.names.append(m)
            out.append(i)
        return np.array(out, np.int64)


class EpochRows:
    """One epoch's slices as last read: each slice's member ids, and a dense score and presence per id."""

    def __init__(self, n_slices: int) -> None:
        self.gens = [-1] * n_slices
        self.rows: list[IDS] = [_NO_IDS] * n_slices
        self.score = np.zeros(0, np.float64)
        self.present = np.zeros(0, np.bool_)

    def sync(self, keys: Sequence[str], gen: dict[str, int], read: Callable[[str], views.Rows],
             members: Members) -> None:
        """Re-read the slices written since the last sync."""
        for part, key in enumerate(keys):
            g = gen.get(key, 0)
            if g == self.gens[part]:
                continue
            rows = read(key)
            ids = members.ids(rows)
            self.fit(len(members.names))
            old = self.rows[part]
            self.present[old] = False
            self.score[old] = 0.0
            self.present[ids] = True
            self.score[ids] = np.fromiter(map(_SCORE, rows), np.float64, len(rows))
            self.rows[part], self.gens[part] = ids, g

    def fit(self, n: int) -> None:
        """Arrays over at least ``n`` ids (new ids: absent, score 0)."""
        if n > self.score.size:
            grow = max(n, 2 * self.score.size)
            self.score = np.concatenate([self.score, np.zeros(grow - self.score.size)])
            self.present = np.concatenate([self.present, np.zeros(grow - self.present.size, np.bool_)])


class MergedTop:
    """``views.decayed_top`` of ``read(slice key)`` rows over epochs, kept per (name, epoch, k)."""

    def __init__(self, n_slices: int) -> None:
        self.n_slices = n_slices
        self.members = Members()
        self._epochs: dict[tuple[str, int, int], EpochRows] = {}

    def top(self, name: str, slice_keys: Sequence[tuple[int, Sequence[str]]], gen: dict[str, int],
            read: Callable[[str], views.Rows], now: float, half_life_s: float, k: int) -> Scored:
        """``slice_keys``: per epoch (newest first), the keys of its slices; ``name`` tells the slice
        sets apart (kind and segment)."""
        synced = []
        for epoch, keys in slice_keys:
            rows = self._epoch(name, epoch, k)
            rows.sync(keys, gen, read, self.members)
            synced.append((epoch, rows))
        n = len(self.members.names)
        acc, present = np.zeros(n), np.zeros(n, np.bool_)
        for epoch, rows in synced:  # 0.0 + score * w is score * w: the sums of views.decayed_top
            rows.fit(n)
            acc = acc + rows.score[:n] * decay.epoch_weight(epoch, now, half_life_s)
            present |= rows.present[:n]
        return self._ranked(acc, present, k)

    def _epoch(self, name: str, epoch: int, k: int) -> EpochRows:
        key = (name, epoch, k)
        rows = self._epochs.get(key)
        if rows is None:
            stale = [e for e in self._epochs if e[0] == name and e[2] == k and e[1] < epoch - 1]
            for e in stale:  # epochs no read combines any more
                del self._epochs[e]
            rows = self._epochs[key] = EpochRows(self.n_slices)
        return rows

    def _ranked(self, acc: npt.NDArray[np.float64], present: npt.NDArray[np.bool_], k: int) -> Scored:
        """As :func:`views.by_score` of the present members' sums (``views.top_of_sums``, the serving
        store's merge's last step too)."""
        return views.top_of_sums(self.members.names, acc, np.flatnonzero(present), k)
