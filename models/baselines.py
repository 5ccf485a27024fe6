"""Baseline recommenders, fitted on training sequences; each scores every item for a batch of histories.

- ``Pop``: training interaction counts.
- ``ItemKNN``: RecBole's ItemKNN (``recbole/model/general_recommender/itemknn.py``). Cosine between
  the binary user-item columns, ``sim(i, j) = co(i, j) / (|i| |j| + shrink + 1e-6)``, self-similarity
  removed; for each TARGET item ``j`` (a column of ``W``) only its ``k`` most similar items are kept;
  ``score = history @ W``. ``W`` is a ``scipy.sparse`` matrix built in column blocks whose
  co-occurrence work is bounded (``block_nnz``), so memory grows with the interactions, never with
  items x items.
- ``CoVisit``: windowed co-visitation item -> next items (weight ``1/distance`` within ``window``,
  ``backward`` times that for the reverse direction), rows normalised, scored from the user's last
  ``last_n`` items with recency decay. Also a candidate source for the learned pipeline.

All share (``Baseline``) ``fit(train_seq, n_items) -> self``, ``score(histories) -> float32
[len(histories), n_items]`` (dense: call it on a batch of users, never on all of them) and
``recommend(histories, n, batch, seed) -> int64 [len(histories), n]``: each user's top ``n`` unseen
items, best first, ties at random, ``-1`` padded, computed in user batches (``top_n_lists`` over the
sparse scores ``score_sparse`` for ItemKNN and CoVisit, one global order for Pop). At 50,000 users x
50,000 items nothing holds a dense users x items matrix.

Example:
    >>> import numpy as np
    >>> cv = CoVisit().fit([np.array([0, 1, 2])], 3)
    >>> int(np.argmax(cv.score([np.array([0])])[0]))
    1
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from models.metrics import flatten, group_rank, top_n_lists

IntArray = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]


class Baseline(Protocol):
    def fit(self, train_seq: Sequence[IntArray], n_items: int) -> Baseline: ...

    def score(self, histories: Sequence[IntArray]) -> F32: ...

    def recommend(self, histories: Sequence[IntArray], n: int, batch: int = 256,
                  seed: int = 0) -> IntArray: ...


class Pop:
    def fit(self, train_seq: Sequence[IntArray], n_items: int) -> Pop:
        flat = np.concatenate(list(train_seq)) if len(train_seq) else np.zeros(0, np.int64)
        self.counts = np.bincount(flat, minlength=n_items).astype(np.float32)
        return self

    def score(self, histories: Sequence[IntArray]) -> F32:
        return np.tile(self.counts, (len(histories), 1))

    def recommend(self, histories: Sequence[IntArray], n: int, batch: int = 256, seed: int = 0) -> IntArray:
        """As ``top_n_lists(self.score, ...)`` without scoring the catalogue per user: one global
        order (ties at random), each user's seen items skipped."""
        order = np.lexsort((np.random.default_rng(seed).random(len(self.counts)), -self.counts))
        return np.concatenate([_first_unseen(order, histories[lo:lo + batch], n)
                               for lo in range(0, len(histories), batch)] or [np.zeros((0, n), np.int64)])


def _first_unseen(order: IntArray, histories: Sequence[IntArray], n: int) -> IntArray:
    cand = order[:n + max((len(h) for h in histories), default=0)]
    where = np.full(len(order), -1, np.int64)
    where[cand] = np.arange(len(cand))
    seen = np.zeros((len(histories), len(cand)), bool)
    rows, cols = flatten(histories)
    hit = where[cols] >= 0
    seen[rows[hit], where[cols[hit]]] = True
    picked = np.argsort(seen, axis=1, kind="stable")[:, :n]
    out = np.where(np.take_along_axis(seen, picked, axis=1), -1, cand[picked])
    return np.pad(out, ((0, 0), (0, n - out.shape[1])), constant_values=-1)


def binary_matrix(seqs: Sequence[IntArray], n_items: int) -> sp.csr_matrix:
    """``[len(seqs), n_items]`` float32, 1 where the sequence holds the item (repeats count once)."""
    rows, cols = flatten(seqs)
    m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(seqs), n_items))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def _column_blocks(x: sp.csr_matrix, budget: int) -> Iterator[tuple[int, int]]:
    """Contiguous column ranges whose co-occurrence work (sum over a column's users of their history
    length, an upper bound on its non-zeros in ``x.T @ x``) stays within ``budget`` (or one column)."""
    if not x.shape[1]:
        return
    row_len = np.diff(x.indptr).astype(np.float64)
    cost = np.cumsum(np.asarray(x.T @ row_len).ravel())
    n = x.shape[1]
    marks = np.searchsorted(cost, np.arange(1, int(cost[-1] // budget) + 1) * float(budget), "right")
    edges = np.unique(np.concatenate([[0], marks, [n]]))
    yield from zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True)


def _block_top_k(xt: sp.csr_matrix, xc: sp.csc_matrix, lo: int, hi: int, norms: npt.NDArray[np.float64],
                 k: int, shrink: float) -> tuple[IntArray, IntArray, F32]:
    """Top-``k`` (source, target, cosine) triples for each target column in ``[lo, hi)``."""
    co = (xt @ xc[:, lo:hi]).tocoo()
    src, dst = co.row.astype(np.int64), co.col.astype(np.int64) + lo
    sim = co.data / (norms[src] * norms[dst] + shrink + 1e-6)
    sim[src == dst] = 0.0
    # one sort: by target, then by descending similarity (cosine of binary columns lies in [0, 1])
    order = np.argsort(dst + (1.0 - np.clip(sim, 0.0, 1.0)) * 0.5)
    src, dst, sim = src[order], dst[order], sim[order]
    top = (group_rank(dst) < k) & (sim != 0)
    return src[top], dst[top], sim[top].astype(np.float32)


def item_cosine_top_k(x: sp.csr_matrix, k: int, shrink: float = 0.0,
                      block_nnz: int = 5_000_000) -> sp.csr_matrix:
    """RecBole's ``ComputeSimilarity.compute_items_similarity``: ``W[i, j]`` = cosine of columns i
    and j of ``x`` (users x items) with shrink, diagonal removed, top-``k`` sources per target ``j``."""
    n = x.shape[1]
    xc = x.tocsc()
    norms = np.sqrt(np.asarray(xc.multiply(xc).sum(axis=0), np.float64).ravel())
    xt = x.T.tocsr()
    parts = [_block_top_k(xt, xc, lo, hi, norms, k, shrink) for lo, hi in _column_blocks(x, block_nnz)]
    src, dst, sim = (np.concatenate(p) for p in zip(*parts, strict=True)) if parts else (
        np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    return sp.csr_matrix((sim, (src, dst)), shape=(n, n), dtype=np.float32)


@dataclass
class ItemKNN:
    k: int = 100
    shrink: float = 0.0
    block_nnz: int = 5_000_000

    def fit(self, train_seq: Sequence[IntArray], n_items: int) -> ItemKNN:
        self.sim = item_cosine_top_k(binary_matrix(train_seq, n_items), self.k, self.shrink,
                                     self.block_nnz)
        self.n_items = n_items
        return self

    def score_sparse(self, histories: Sequence[IntArray]) -> sp.csr_matrix:
        return (binary_matrix(histories, self.n_items) @ self.sim).tocsr()

    def score(self, histories: Sequence[IntArray]) -> F32:
        return self.score_sparse(histories).toarray().astype(np.float32, copy=False)

    def recommend(self, histories: Sequence[IntArray], n: int, batch: int = 256, seed: int = 0) -> IntArray:
        return top_n_lists(self.score_sparse, histories, n, batch, seed)


def _covisit_pairs(train_seq: Sequence[IntArray], window: int,
                   backward: float) -> tuple[IntArray, IntArray, npt.NDArray[np.float64]]:
    """(from, to, weight) for every ordered pair within ``window`` steps inside one sequence."""
    users, items = flatten(train_seq)
    rows, cols, vals = [], [], []
    for d in range(1, window + 1):
        same = users[:-d] == users[d:]
        a, b = items[:-d][same], items[d:][same]
        rows += [a, b]
        cols += [b, a]
        vals += [np.full(len(a), 1.0 / d), np.full(len(a), backward / d)]
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


@dataclass
class CoVisit:
    window: int = 5
    last_n: int = 5
    decay: float = 0.6
    backward: float = 0.3

    def fit(self, train_seq: Sequence[IntArray], n_items: int) -> CoVisit:
        rows, cols, vals = _covisit_pairs(train_seq, self.window, self.backward)
        c = sp.csr_matrix((vals.astype(np.float32), (rows, cols)), shape=(n_items, n_items),
                          dtype=np.float32)
        total = np.asarray(c.sum(axis=1)).ravel()
        self.matrix = (sp.diags(1.0 / np.maximum(total, 1e-9)).astype(np.float32) @ c).tocsr()
        self.n_items = n_items
        return self

    def score_sparse(self, histories: Sequence[IntArray]) -> sp.csr_matrix:
        last = [np.asarray(h[-self.last_n:], np.int64)[::-1] for h in histories]
        rows, cols = flatten(last)
        q = sp.csr_matrix(((self.decay ** group_rank(rows)).astype(np.float32), (rows, cols)),
                          shape=(len(histories), self.n_items), dtype=np.float32)
        return (q @ self.matrix).tocsr()

    def score(self, histories: Sequence[IntArray]) -> F32:
        return self.score_sparse(histories).toarray().astype(np.float32, copy=False)

    def recommend(self, histories: Sequence[IntArray], n: int, batch: int = 256, seed: int = 0) -> IntArray:
        return top_n_lists(self.score_sparse, histories, n, batch, seed)
