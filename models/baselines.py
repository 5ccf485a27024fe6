"""Baseline recommenders, fitted on training sequences and scoring every item for a history.

- ``Pop``: training interaction counts.
- ``ItemKNN``: item-item cosine over the user-item matrix (top-``k`` neighbours, ``shrink``), as RecBole.
- ``CoVisit``: windowed co-visitation item -> next items (weight ``1/distance`` within ``window``),
  rows normalised, scored from the user's last ``last_n`` items with recency decay. Also a candidate
  source and a ranking feature for the learned pipeline.

All share ``fit(train_seq, n_items)`` and ``score(histories) -> float32 [U, n_items]``.

Example:
    >>> import numpy as np
    >>> cv = CoVisit().fit([np.array([0, 1, 2])], 3)
    >>> int(np.argmax(cv.score([np.array([0])])[0]))
    1
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

IntArray = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]


class Pop:
    def fit(self, train_seq: Sequence[IntArray], n_items: int) -> Pop:
        flat = np.concatenate(list(train_seq)) if train_seq else np.zeros(0, np.int64)
        self.counts = np.bincount(flat, minlength=n_items).astype(np.float32)
        return self

    def score(self, histories: Sequence[IntArray]) -> F32:
        return np.tile(self.counts, (len(histories), 1))


def _user_item(train_seq: Sequence[IntArray], n_items: int) -> sp.csr_matrix:
    rows = np.concatenate([np.full(len(s), u) for u, s in enumerate(train_seq)])
    cols = np.concatenate(list(train_seq))
    m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(train_seq), n_items))
    m.data[:] = 1.0
    return m


def _histories_matrix(histories: Sequence[IntArray], n_items: int) -> sp.csr_matrix:
    rows = np.concatenate([np.full(len(h), u) for u, h in enumerate(histories)])
    cols = np.concatenate([np.asarray(h, np.int64) for h in histories]) if histories else rows
    m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(histories), n_items))
    m.data[:] = 1.0
    return m


def _keep_top_k(sim: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.float32]:
    if k >= sim.shape[1]:
        return sim
    cut = np.argpartition(-sim, k - 1, axis=1)[:, k:]
    np.put_along_axis(sim, cut, 0.0, axis=1)
    return sim


@dataclass
class ItemKNN:
    k: int = 100
    shrink: float = 0.0

    def fit(self, train_seq: Sequence[IntArray], n_items: int) -> ItemKNN:
        m = _user_item(train_seq, n_items)
        co = np.asarray((m.T @ m).todense(), dtype=np.float32)
        norms = np.sqrt(np.diag(co))
        sim = co / (np.outer(norms, norms) + self.shrink + 1e-9)
        np.fill_diagonal(sim, 0.0)
        self.sim = _keep_top_k(sim.astype(np.float32), self.k)
        self.n_items = n_items
        return self

    def score(self, histories: Sequence[IntArray]) -> F32:
        return np.asarray(_histories_matrix(histories, self.n_items) @ self.sim, dtype=np.float32)


@dataclass
class CoVisit:
    window: int = 5
    last_n: int = 5
    decay: float = 0.6
    backward: float = 0.3

    def fit(self, train_seq: Sequence[IntArray], n_items: int) -> CoVisit:
        rows, cols, vals = [], [], []
        for s in train_seq:
            for d in range(1, self.window + 1):
                if len(s) > d:
                    rows += [s[:-d], s[d:]]
                    cols += [s[d:], s[:-d]]
                    vals += [np.full(len(s) - d, 1.0 / d), np.full(len(s) - d, self.backward / d)]
        if not vals:
            rows, cols, vals = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0)]
        c = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(n_items, n_items), dtype=np.float32)
        total = np.asarray(c.sum(axis=1)).ravel()
        self.matrix = sp.diags(1.0 / np.maximum(total, 1e-9)).astype(np.float32) @ c
        self.n_items = n_items
        return self

    def score(self, histories: Sequence[IntArray]) -> F32:
        rows, cols, vals = [], [], []
        for u, h in enumerate(histories):
            last = np.asarray(h[-self.last_n:], np.int64)[::-1]
            rows.append(np.full(len(last), u))
            cols.append(last)
            vals.append(self.decay ** np.arange(len(last), dtype=np.float32))
        q = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(len(histories), self.n_items), dtype=np.float32)
        return np.asarray((q @ self.matrix).todense(), dtype=np.float32)
