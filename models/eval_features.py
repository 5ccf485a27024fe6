"""Offline candidate generation and ranking features for the evaluation harness.

Mirrors what the online pipeline does per request, vectorised over users: candidates are the union
of two-tower top-``n_tt``, co-visitation top-``n_cv`` and recently-popular top-``n_pop`` items (history
excluded); each candidate gets the dense features in ``FEATURES``, computed only from training
interactions that happened before the user's reference time (no peeking at later events).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.baselines import CoVisit, ItemKNN
from models.data import Split

F32 = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
DAY = 86400.0

FEATURES = ("tt_score", "tt_rank", "cv_score", "cv_rank", "knn_score", "pop", "pop_7d", "pop_1d",
            "item_age", "item_idle", "is_cold", "content_sim", "hist_len", "item_rating", "user_rating")


@dataclass(frozen=True)
class CandidateConfig:
    n_tt: int = 200
    n_cv: int = 100
    n_pop: int = 50
    cv_window: int = 10
    cv_last_n: int = 10
    cv_decay: float = 0.8
    cv_backward: float = 0.5


@dataclass
class Phase:
    """One evaluation step: per user the visible history, reference time and target."""

    histories: list[IntArray]
    ref_time: npt.NDArray[np.float64]
    targets: IntArray
    user_rating: F32
    target_weight: npt.NDArray[np.float64]


@dataclass
class Candidates:
    items: IntArray              # [U, K] item codes (0 where masked)
    mask: npt.NDArray[np.bool_]  # [U, K]
    dense: F32                   # [U, K, len(FEATURES)]


class FeatureBuilder:
    """Fitted once on the training split; builds candidates + features for any phase."""

    def __init__(self, split: Split, n_items: int, content: F32 | None, cfg: CandidateConfig) -> None:
        self.cfg, self.n_items, self.content = cfg, n_items, content
        self.covisit = CoVisit(cfg.cv_window, cfg.cv_last_n, cfg.cv_decay, cfg.cv_backward)
        self.covisit.fit(split.train_seq, n_items)
        self.knn = ItemKNN().fit(split.train_seq, n_items)
        items = np.concatenate(split.train_seq)
        times = np.concatenate(split.train_ts)
        ratings = np.concatenate(split.train_weight)
        self.pop = np.bincount(items, minlength=n_items).astype(np.float64)
        sums = np.bincount(items, weights=ratings, minlength=n_items)
        self.item_rating = np.where(self.pop > 0, sums / np.maximum(self.pop, 1), np.nan)
        self.first_ts = np.full(n_items, np.nan)
        np.fmin.at(self.first_ts, items, times)
        order = np.lexsort((times, items))
        self._items, self._times = items[order], times[order]
        self._tmin = float(times.min()) if len(times) else 0.0
        self._span = float(times.max() - self._tmin + 2.0) if len(times) else 2.0
        self._stride = self._span + 1.0
        self._keys = self._items * self._stride + (self._times - self._tmin)

    def _count_before(self, items: IntArray, ref: npt.NDArray[np.float64], window: float) -> F32:
        return (self._key_pos(items, ref) - self._key_pos(items, ref - window)).astype(np.float32)

    def _key_pos(self, items: IntArray, t: npt.NDArray[np.float64]) -> IntArray:
        """Index of the first training event after (item, t) in the (item, time)-sorted log."""
        rel = np.clip(t - self._tmin, -1.0, self._span)
        return np.searchsorted(self._keys, items * self._stride + rel, side="right").astype(np.int64)

    def build(self, phase: Phase, tt_scores: F32) -> Candidates:
        hist_mask = _history_mask(phase.histories, self.n_items)
        tt = np.where(hist_mask, -np.inf, tt_scores)
        cv = np.where(hist_mask, -np.inf, self.covisit.score(phase.histories))
        ref = phase.ref_time[:, None]
        recent = np.where(hist_mask, -np.inf, self._recent_pop(phase.ref_time))
        items, mask = self._union(tt, cv, recent)
        dense = self._features(phase, items, tt, cv, ref)
        return Candidates(items, mask, dense)

    def _recent_pop(self, ref_time: npt.NDArray[np.float64]) -> F32:
        grid = np.broadcast_to(np.arange(self.n_items), (len(ref_time), self.n_items))
        ref = np.broadcast_to(ref_time[:, None], grid.shape)
        return self._count_before(grid, ref, 7 * DAY)

    def _union(self, tt: F32, cv: F32, recent: F32) -> tuple[IntArray, npt.NDArray[np.bool_]]:
        c = self.cfg
        parts = [_top(tt, c.n_tt), _top(np.where(cv > 0, cv, -np.inf), c.n_cv), _top(recent, c.n_pop)]
        allc = np.concatenate([p[0] for p in parts], axis=1)
        valid = np.concatenate([p[1] for p in parts], axis=1)
        items = np.zeros_like(allc)
        mask = np.zeros(allc.shape, bool)
        for u in range(len(allc)):
            uniq = np.unique(allc[u][valid[u]])
            items[u, :len(uniq)], mask[u, :len(uniq)] = uniq, True
        width = int(mask.sum(1).max()) if len(mask) else 0
        return items[:, :width], mask[:, :width]

    def _features(self, phase: Phase, items: IntArray, tt: F32, cv: F32,
                  ref: npt.NDArray[np.float64]) -> F32:
        rows = np.arange(len(items))[:, None]
        tt_c, cv_c = tt[rows, items], cv[rows, items]
        knn = self.knn.score(phase.histories)[rows, items]
        hist_len = np.array([len(h) for h in phase.histories], np.float32)[:, None]
        refb = np.broadcast_to(ref, items.shape)
        idle = refb - self._last_before(items, refb)
        age = refb - self.first_ts[items]
        cols = [tt_c, _rank_of(tt, tt_c), cv_c, _rank_of(cv, cv_c), knn / np.maximum(hist_len, 1),
                np.log1p(self.pop[items]), np.log1p(self._count_before(items, refb, 7 * DAY)),
                np.log1p(self._count_before(items, refb, DAY)),
                np.log1p(np.clip(age, 0, None) / DAY), np.log1p(np.clip(idle, 0, None) / DAY),
                (self.pop[items] == 0).astype(np.float32), self._content_sim(phase, items),
                np.log1p(np.broadcast_to(hist_len, items.shape)), self.item_rating[items],
                np.broadcast_to(phase.user_rating[:, None], items.shape)]
        return np.stack([np.asarray(c, np.float32) for c in cols], axis=-1)

    def _last_before(self, items: IntArray, t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        pos = self._key_pos(items, t) - 1
        ok = (pos >= 0) & (self._items[np.clip(pos, 0, None)] == items)
        return np.where(ok, self._times[np.clip(pos, 0, None)], np.nan)

    def _content_sim(self, phase: Phase, items: IntArray) -> F32:
        if self.content is None:
            return np.zeros(items.shape, np.float32)
        recent = np.stack([self.content[h[-5:]].mean(0) if len(h) else np.zeros(self.content.shape[1])
                           for h in phase.histories]).astype(np.float32)
        return np.einsum("ukd,ud->uk", self.content[items], recent)


def _history_mask(histories: Sequence[IntArray], n_items: int) -> npt.NDArray[np.bool_]:
    mask = np.zeros((len(histories), n_items), bool)
    for u, h in enumerate(histories):
        mask[u, h] = True
    return mask


def _top(scores: F32, k: int) -> tuple[IntArray, npt.NDArray[np.bool_]]:
    k = min(k, scores.shape[1])
    idx = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return idx.astype(np.int64), np.isfinite(np.take_along_axis(scores, idx, axis=1))


def _rank_of(full: F32, values: F32) -> F32:
    """log1p of each candidate's rank within its user's full score row."""
    srt = np.sort(full, axis=1)[:, ::-1]
    ranks = np.stack([np.searchsorted(-srt[u], -values[u], side="left") for u in range(len(full))])
    return np.log1p(ranks).astype(np.float32)
