"""Full-ranking metrics for one held-out item per user.

``target_ranks(scores, targets)`` gives each user's 0-based rank of their target among all items
(``-inf`` scores = excluded items; ties with the target count half, i.e. the expected rank under a
random tie-break). The metric functions take those ranks:

- ``hit_rate(ranks, k)``: share of users whose target is in the top k.
- ``ndcg(ranks, k)``: mean of ``1 / log2(rank + 2)`` for targets in the top k (one relevant item).
- ``recall(ranks, k)``: equals hit rate with a single target.
- ``mrr(ranks)``: mean reciprocal rank over the full list.
- ``coverage(top_lists, n_items)``: share of the catalogue appearing in any top-k list.
- ``novelty(top_lists, item_pop, n_users)``: mean self-information ``-log2(pop / n_users)``.

Ranked lists (what the serving pipeline returns): ``evaluate_lists(lists, targets, item_pop, n_users)``
takes, per test user, a ranked list of item codes (ragged or ``-1``-padded; any length, served feeds
hold >= 50) and the target. A target absent from the list counts as not retrieved, so every metric is
computed over the list: NDCG@10, HR@10 and Recall@50 as above; MRR is the reciprocal rank within the
list and 0 when the target is absent (MRR truncated at the list length, unlike ``mrr`` on full ranks).
Coverage@10 is the share of the catalogue in any user's top 10; novelty@10 is each user's mean
self-information of their top 10, ``-log2(max(pop, 1) / n_users)``. ``ListEvaluation.means()`` and
``.se()`` give the mean over users and its standard error (``std(ddof=1) / sqrt(users)``); coverage
is a catalogue-level figure and has no per-user standard error.

- ``top_n_lists(scores_fn, histories, n, batch)``: a baseline's ranked lists, scored in user batches,
  each user's history masked, ties broken by a seeded random order; never ``[users, items]`` at once.
  ``scores_fn`` may return dense scores or sparse non-negative ones (unlisted = 0, far faster).
- ``paired_difference(ours, theirs)``: mean and standard error of the per-user difference (users
  aligned; ``[seeds, users]`` arrays are averaged over seeds first). "Ahead by at least 2 standard
  errors" means ``mean >= 2 * se``.
- ``aggregate_seeds(runs)``: per metric, the mean across seeds and its standard error across seeds.

Example:
    >>> import numpy as np
    >>> ndcg(np.array([0.0, 1.0, 20.0]), 10)
    0.5436...
    >>> ev = evaluate_lists([np.array([3, 1, 2]), np.array([0, 2, 3])], np.array([1, 4]), np.ones(5), 2)
    >>> round(ev.means()["ndcg@10"], 4), ev.means()["mrr"]
    (0.3155, 0.25)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
ScoresFn = Callable[[Sequence[IntArray]], npt.NDArray[np.floating] | sp.spmatrix]
Lists = IntArray | Sequence[IntArray]


def target_ranks(scores: npt.NDArray[np.floating], targets: npt.NDArray[np.int64]) -> Array:
    """Args: scores [U, I]; targets [U] item codes. Returns float ranks [U] (0 = first)."""
    t = scores[np.arange(len(targets)), targets][:, None]
    greater = (scores > t).sum(axis=1)
    ties = (scores == t).sum(axis=1) - 1
    return (greater + np.floor(ties / 2)).astype(np.float64)


def hit_rate(ranks: Array, k: int) -> float:
    return float(np.mean(ranks < k)) if len(ranks) else 0.0


def recall(ranks: Array, k: int) -> float:
    return hit_rate(ranks, k)


def ndcg(ranks: Array, k: int) -> float:
    if not len(ranks):
        return 0.0
    gains = np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)
    return float(np.mean(gains))


def mrr(ranks: Array) -> float:
    return float(np.mean(1.0 / (ranks + 1.0))) if len(ranks) else 0.0


def top_k(scores: npt.NDArray[np.floating], k: int) -> npt.NDArray[np.int64]:
    """The k best item codes per row, best first."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1).astype(np.int64)


def coverage(top_lists: npt.NDArray[np.int64], n_items: int) -> float:
    return float(len(np.unique(top_lists)) / n_items) if n_items else 0.0


def novelty(top_lists: npt.NDArray[np.int64], item_pop: Array, n_users: int) -> float:
    """Mean self-information of recommended items; an item never seen counts as seen once."""
    if not top_lists.size:
        return 0.0
    pop = np.maximum(item_pop[top_lists], 1.0)
    return float(np.mean(-np.log2(pop / max(n_users, 1))))


def all_metrics(scores: npt.NDArray[np.floating], targets: npt.NDArray[np.int64],
                item_pop: Array, n_users: int) -> dict[str, float]:
    """Every metric the harness reports, for one score matrix (excluded items already ``-inf``)."""
    ranks = target_ranks(scores, targets)
    tops = top_k(scores, 10)
    return {"ndcg@10": ndcg(ranks, 10), "hr@10": hit_rate(ranks, 10), "recall@50": recall(ranks, 50),
            "mrr": mrr(ranks), "coverage@10": coverage(tops, scores.shape[1]),
            "novelty@10": novelty(tops, item_pop, n_users), "users": float(len(targets))}


def rank_metrics(ranks: Array) -> dict[str, float]:
    """The rank-based metrics only (used for slices)."""
    return {"ndcg@10": ndcg(ranks, 10), "hr@10": hit_rate(ranks, 10), "recall@50": recall(ranks, 50),
            "mrr": mrr(ranks), "users": float(len(ranks))}


def top_n_lists(scores_fn: ScoresFn, histories: Sequence[IntArray], n: int, batch: int = 256,
                seed: int = 0) -> IntArray:
    """``[users, n]`` item codes, best first, each user's ``histories`` items excluded; ``-1`` pads
    rows with fewer than ``n`` rankable items. ``scores_fn`` sees at most ``batch`` histories per call
    and returns ``[batch, items]`` scores: a dense array (``-inf`` = never recommend), or a
    ``scipy.sparse`` matrix of non-negative scores where every unlisted item scores 0 (much faster
    when rows are sparse). Equal scores are ordered at random (seeded by ``seed``)."""
    rng = np.random.default_rng(seed)
    out = []
    for lo in range(0, len(histories), batch):
        chunk = histories[lo:lo + batch]
        scores = scores_fn(chunk)
        top = _top_n_sparse if sp.issparse(scores) else _top_n_dense
        out.append(top(scores, chunk, n, rng))
    return np.concatenate(out) if out else np.zeros((0, n), np.int64)


def flatten(seqs: Sequence[IntArray]) -> tuple[IntArray, IntArray]:
    """(row of each element, element) for a ragged list of item sequences."""
    lengths = np.fromiter((len(x) for x in seqs), np.int64, len(seqs))
    rows = np.repeat(np.arange(len(seqs), dtype=np.int64), lengths)
    cols = np.concatenate([np.asarray(x, np.int64) for x in seqs]) if len(seqs) else rows
    return rows, cols


def _top_n_dense(scores: npt.NDArray[np.floating], histories: Sequence[IntArray], n: int,
                 rng: np.random.Generator) -> IntArray:
    s = np.array(scores, dtype=np.float32)
    s[flatten(histories)] = -np.inf
    perm = rng.permutation(s.shape[1])  # a random column order: ties fall in random item order
    s = np.take(s, perm, axis=1)
    k = min(n, s.shape[1])
    part = np.argpartition(-s, k - 1, axis=1)[:, :k] if k else np.zeros((len(s), 0), np.int64)
    top = np.take_along_axis(s, part, axis=1)
    order = np.argsort(-top, axis=1, kind="stable")
    items = perm[np.take_along_axis(part, order, axis=1)]
    items[~np.isfinite(np.take_along_axis(top, order, axis=1))] = -1
    return np.pad(items.astype(np.int64), ((0, 0), (0, n - k)), constant_values=-1)


def _top_n_sparse(scores: sp.spmatrix, histories: Sequence[IntArray], n: int,
                  rng: np.random.Generator) -> IntArray:
    m = sp.csr_matrix(scores, dtype=np.float32)  # a CSR built by scipy holds no duplicate entries
    if m.nnz and m.data.min() < 0:
        raise ValueError("sparse scores must be non-negative (unlisted items score 0)")
    b, n_items = m.shape
    perm = rng.permutation(n_items)  # relabel items at random: ties fall in random item order
    rows = np.repeat(np.arange(b, dtype=np.int64), np.diff(m.indptr))
    seen = np.zeros((b, n_items), bool)  # one batch only
    seen[flatten(histories)] = True
    ok = (m.data > 0) & ~seen[rows, m.indices]
    rows, cols, vals = rows[ok], np.argsort(perm)[m.indices[ok]], m.data[ok]
    order = _row_score_label_order(rows, vals, cols, b, n_items)
    rows, cols = rows[order], cols[order]
    rank = group_rank(rows)
    keep = rank < n
    out = np.full((b, n), -1, np.int64)
    out[rows[keep], rank[keep]] = perm[cols[keep]]
    _fill_zero_scored(out, np.bincount(rows[keep], minlength=b), histories, n_items, rng)
    return out


def _row_score_label_order(rows: IntArray, vals: npt.NDArray[np.float32], labels: IntArray, n_rows: int,
                           n_labels: int) -> IntArray:
    """Sort order by row, then descending score, then (random) label. Positive float32 bit patterns
    are monotone in the value, so one packed int64 key does it exactly when it fits."""
    inv_bits = np.int64(2**31 - 1) - vals.view(np.int32).astype(np.int64)
    label_bits = max(int(n_labels).bit_length(), 1)
    if int(n_rows).bit_length() + 31 + label_bits > 63:
        return np.lexsort((labels, inv_bits, rows))
    return np.argsort((rows << (31 + label_bits)) | (inv_bits << label_bits) | labels)


def group_rank(keys: IntArray) -> IntArray:
    """0-based position of each element within its run of equal ``keys`` (``keys`` sorted)."""
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else keys
    return np.arange(len(keys)) - np.repeat(starts, np.diff(np.r_[starts, len(keys)]))


def _fill_zero_scored(out: IntArray, filled: IntArray, histories: Sequence[IntArray], n_items: int,
                      rng: np.random.Generator) -> None:
    """Rows with fewer than n positively scored items continue with zero-scored ones, at random."""
    for r in np.flatnonzero(filled < out.shape[1]):
        taken = np.unique(np.concatenate([np.asarray(histories[int(r)], np.int64), out[r, :filled[r]]]))
        need = min(out.shape[1] - filled[r], n_items - len(taken))
        out[r, filled[r]:filled[r] + need] = _random_excluding(taken, need, n_items, rng)


def _random_excluding(taken: IntArray, need: int, n_items: int, rng: np.random.Generator) -> IntArray:
    """``need`` distinct random item codes outside the sorted ``taken``, in random order."""
    if len(taken) + need > n_items // 2:
        return rng.permutation(np.setdiff1d(np.arange(n_items), taken, assume_unique=True))[:need]
    got = np.zeros(0, np.int64)
    while len(got) < need:
        draw = rng.integers(0, n_items, 2 * need + 8)
        draw = np.concatenate([got, draw[~np.isin(draw, taken)]])
        _, first = np.unique(draw, return_index=True)
        got = draw[np.sort(first)]
    return got[:need]


def _padded(lists: Lists) -> IntArray:
    if isinstance(lists, np.ndarray):
        return lists.astype(np.int64, copy=False).reshape(len(lists), -1)
    width = max((len(x) for x in lists), default=0)
    out = np.full((len(lists), width), -1, np.int64)
    for u, x in enumerate(lists):
        out[u, :len(x)] = x
    return out


def list_ranks(lists: Lists, targets: IntArray) -> Array:
    """0-based position of each user's target in their list; ``inf`` when absent."""
    m = _padded(lists)
    hit = (m == np.asarray(targets, np.int64)[:, None]) & (m >= 0)
    return np.where(hit.any(axis=1), hit.argmax(axis=1), np.inf).astype(np.float64)


def per_user_metrics(lists: Lists, targets: IntArray) -> dict[str, Array]:
    """Per user: NDCG@10, HR@10, Recall@50 and MRR, all computed over the list."""
    r = list_ranks(lists, targets)
    with np.errstate(divide="ignore"):
        return {"ndcg@10": np.where(r < 10, 1.0 / np.log2(r + 2.0), 0.0), "hr@10": (r < 10) * 1.0,
                "recall@50": (r < 50) * 1.0, "mrr": np.where(np.isfinite(r), 1.0 / (r + 1.0), 0.0)}


def standard_error(x: npt.ArrayLike) -> float:
    """``std(ddof=1) / sqrt(n)``; 0 for fewer than two values."""
    a = np.asarray(x, np.float64)
    return float(a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else 0.0


@dataclass(frozen=True)
class ListEvaluation:
    """Per-user metric arrays (users aligned with the targets) plus catalogue coverage@10."""

    per_user: dict[str, Array]
    coverage: float

    def means(self) -> dict[str, float]:
        out = {k: float(v.mean()) if len(v) else 0.0 for k, v in self.per_user.items()}
        users = len(next(iter(self.per_user.values()), ()))
        return {**out, "coverage@10": self.coverage, "users": float(users)}

    def se(self) -> dict[str, float]:
        return {k: standard_error(v) for k, v in self.per_user.items()}


def evaluate_lists(lists: Lists, targets: IntArray, item_pop: Array, n_users: int) -> ListEvaluation:
    """``item_pop``: per item code, how many training users interacted with it (length = catalogue)."""
    m = _padded(lists)
    top = m[:, :10]
    valid = top >= 0
    info = -np.log2(np.maximum(np.asarray(item_pop, np.float64)[np.where(valid, top, 0)], 1.0)
                    / max(n_users, 1))
    novelty = np.where(valid, info, 0.0).sum(1) / np.maximum(valid.sum(1), 1)
    cov = len(np.unique(top[valid])) / len(item_pop) if len(item_pop) else 0.0
    return ListEvaluation({**per_user_metrics(m, targets), "novelty@10": novelty}, float(cov))


def paired_difference(ours: npt.ArrayLike, theirs: npt.ArrayLike) -> tuple[float, float]:
    """Mean and standard error of ``ours - theirs`` per user; ``[seeds, users]`` inputs are averaged
    over seeds first (users must be the same and in the same order in both)."""
    a, b = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired comparison needs aligned users: shapes {a.shape} vs {b.shape}")
    d = (a - b).reshape(-1, a.shape[-1]).mean(axis=0) if a.ndim > 1 else a - b
    return float(d.mean()) if len(d) else 0.0, standard_error(d)


def aggregate_seeds(runs: Sequence[Mapping[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Per metric (keys common to every run): the mean across seeds and its standard error across
    seeds (0 with a single seed: report that run's per-user standard error instead)."""
    if not runs:
        raise ValueError("aggregate_seeds needs at least one run")
    keys = [k for k in runs[0] if all(k in r for r in runs)]
    means = {k: float(np.mean([r[k] for r in runs])) for k in keys}
    return means, {k: standard_error([r[k] for r in runs]) for k in keys}
