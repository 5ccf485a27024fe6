import math

import numpy as np
import pytest
import scipy.sparse as sp

from models.metrics import (
    aggregate_seeds,
    all_metrics,
    evaluate_lists,
    list_ranks,
    paired_difference,
    per_user_metrics,
    standard_error,
    top_n_lists,
)


def test_ranks_in_ragged_and_padded_lists():
    lists = [np.array([5, 3, 9]), np.array([1]), np.array([2, 2, 7, 8])]
    assert list_ranks(lists, np.array([9, 4, 2])).tolist() == [2.0, math.inf, 0.0]
    padded = np.array([[5, 3, 9], [1, -1, -1]])
    assert list_ranks(padded, np.array([3, -1])).tolist() == [1.0, math.inf]  # padding never matches


def test_per_user_metrics_hand_computed_and_truncated_at_the_list():
    lists = [np.arange(60), np.arange(60), np.arange(60), np.arange(60), np.arange(5)]
    targets = np.array([0, 9, 10, 49, 7])  # the last target is beyond its (short) list
    m = per_user_metrics(lists, targets)
    assert m["ndcg@10"].tolist() == pytest.approx([1.0, 1 / math.log2(11), 0.0, 0.0, 0.0])
    assert m["hr@10"].tolist() == [1, 1, 0, 0, 0] and m["recall@50"].tolist() == [1, 1, 1, 1, 0]
    assert m["mrr"].tolist() == pytest.approx([1.0, 0.1, 1 / 11, 1 / 50, 0.0])


def test_list_metrics_agree_with_full_ranking_metrics_when_no_ties():
    rng = np.random.default_rng(0)
    scores = rng.random((40, 100))
    targets = rng.integers(0, 100, 40)
    pop = rng.integers(0, 30, 100).astype(float)
    full = all_metrics(scores, targets, pop, 30)
    lists = np.argsort(-scores, axis=1)[:, :50]
    got = evaluate_lists(lists, targets, pop, 30).means()
    for key in ("ndcg@10", "hr@10", "recall@50", "coverage@10", "novelty@10"):
        assert got[key] == pytest.approx(full[key]), key
    assert got["mrr"] <= full["mrr"] and got["users"] == 40.0


def test_means_and_standard_errors():
    ev = evaluate_lists([np.array([1, 2]), np.array([2, 1]), np.array([3, 1]), np.array([1, 3])],
                        np.array([1, 1, 1, 1]), np.array([0.0, 4, 2, 1]), 4)
    hits = np.array([1.0, 1 / math.log2(3), 1 / math.log2(3), 1.0])
    assert ev.means()["ndcg@10"] == pytest.approx(hits.mean())
    assert ev.se()["ndcg@10"] == pytest.approx(hits.std(ddof=1) / 2)
    assert ev.means()["coverage@10"] == pytest.approx(3 / 4)
    assert ev.means()["novelty@10"] == pytest.approx(np.mean([0.5, 0.5, 1.0, 1.0]))
    assert "coverage@10" not in ev.se()


def test_top_n_lists_masks_history_batches_and_pads():
    calls = []

    def scores(histories):
        calls.append(len(histories))
        return np.tile(np.arange(6, dtype=np.float32), (len(histories), 1))  # higher code = better

    hist = [np.array([5]), np.array([0, 1, 2, 3]), np.array([], np.int64)]
    lists = top_n_lists(scores, hist, 3, batch=2)
    assert lists.tolist() == [[4, 3, 2], [5, 4, -1], [5, 4, 3]]
    assert calls == [2, 1]
    assert top_n_lists(scores, [np.array([5])], 9).tolist() == [[4, 3, 2, 1, 0, -1, -1, -1, -1]]


def test_top_n_lists_breaks_ties_at_random_but_reproducibly():
    def flat(histories):
        return np.zeros((len(histories), 1000), np.float32)

    hist = [np.array([], np.int64)] * 50
    a, b = top_n_lists(flat, hist, 10, seed=1), top_n_lists(flat, hist, 10, seed=1)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, top_n_lists(flat, hist, 10, seed=2))
    assert a.min() >= 0 and np.median(a) > 100  # not the lowest codes first


def test_paired_difference_cancels_what_users_share():
    rng = np.random.default_rng(0)
    base = rng.random(400)
    ours = base + 0.01 + rng.normal(0, 0.001, 400)
    mean, se = paired_difference(ours, base)
    assert mean == pytest.approx(0.01, abs=0.001) and se < 0.0002
    assert se < standard_error(ours)  # far tighter than the unpaired spread
    seeds = np.stack([ours, ours + 0.02])
    assert paired_difference(seeds, np.stack([base, base]))[0] == pytest.approx(0.02, abs=0.001)
    with pytest.raises(ValueError, match="aligned"):
        paired_difference(ours, base[:-1])


def test_aggregate_seeds():
    means, se = aggregate_seeds([{"ndcg@10": 0.1, "mrr": 0.2, "x": 1.0}, {"ndcg@10": 0.2, "mrr": 0.4}])
    assert set(means) == {"ndcg@10", "mrr"}
    assert means["ndcg@10"] == pytest.approx(0.15) and se["ndcg@10"] == pytest.approx(0.05)
    assert aggregate_seeds([{"a": 1.0}])[1] == {"a": 0.0}
    with pytest.raises(ValueError):
        aggregate_seeds([])


def _sparse_scores(n_rows: int, n_items: int, density: float, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    m = sp.random(n_rows, n_items, density=density, random_state=seed, format="csr", dtype=np.float32)
    m.data[:] = rng.permutation(len(m.data)) + 1.0  # distinct positive scores
    return m


def test_sparse_scores_rank_like_the_dense_ones_then_fill_with_unscored_items():
    m = _sparse_scores(30, 400, 0.05, seed=3)  # about 20 scored items per row: some rows fall short
    hist = [np.flatnonzero(m[r].toarray()[0])[:3] for r in range(30)]  # hide 3 scored items each
    sparse = top_n_lists(lambda h: m, hist, 25, batch=30)
    dense = top_n_lists(lambda h: m.toarray(), hist, 25, batch=30)
    for r in range(30):
        scored = {int(i) for i in np.flatnonzero(m[r].toarray()[0])} - set(hist[r].tolist())
        k = min(len(scored), 25)
        assert sparse[r, :k].tolist() == dense[r, :k].tolist()
        tail = sparse[r, k:]
        assert len(set(tail.tolist())) == len(tail)
        assert not set(tail.tolist()) & (scored | set(hist[r].tolist()))
    assert any(len(np.flatnonzero(m[r].toarray()[0])) - 3 < 25 for r in range(30))  # the fill was used


def test_sparse_ties_are_random_and_negative_scores_refused():
    m = sp.csr_matrix(np.ones((20, 300), np.float32))
    a = top_n_lists(lambda h: m[:len(h)], [np.array([], np.int64)] * 20, 5, seed=0)
    b = top_n_lists(lambda h: m[:len(h)], [np.array([], np.int64)] * 20, 5, seed=1)
    assert not np.array_equal(a, b) and np.median(a) > 30
    with pytest.raises(ValueError, match="non-negative"):
        top_n_lists(lambda h: -m[:len(h)], [np.array([0])], 5)
