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

Example:
    >>> import numpy as np
    >>> ndcg(np.array([0.0, 1.0, 20.0]), 10)
    0.5436...
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


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
