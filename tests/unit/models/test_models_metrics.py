import math

import numpy as np
import pytest

from models.metrics import all_metrics, coverage, hit_rate, mrr, ndcg, novelty, target_ranks, top_k


def test_target_ranks_counts_higher_scores_and_half_the_ties():
    scores = np.array([[0.9, 0.5, 0.1, 0.7],
                       [0.2, 0.2, 0.2, 0.2],
                       [-np.inf, 1.0, 0.5, 0.0]])
    ranks = target_ranks(scores, np.array([1, 0, 2]))
    assert ranks.tolist() == [2.0, 1.0, 1.0]


def test_ndcg_hr_mrr_hand_computed():
    ranks = np.array([0.0, 1.0, 9.0, 10.0])
    assert hit_rate(ranks, 10) == pytest.approx(0.75)
    assert ndcg(ranks, 10) == pytest.approx((1.0 + 1 / math.log2(3) + 1 / math.log2(11)) / 4)
    assert mrr(ranks) == pytest.approx((1 + 1 / 2 + 1 / 10 + 1 / 11) / 4)


def test_top_k_order_coverage_and_novelty():
    scores = np.array([[0.1, 0.9, 0.5], [0.8, 0.0, 0.3]])
    tops = top_k(scores, 2)
    assert tops.tolist() == [[1, 2], [0, 2]]
    assert coverage(tops, 4) == pytest.approx(3 / 4)
    pop = np.array([4.0, 2.0, 1.0])
    expected = np.mean([-math.log2(2 / 4), -math.log2(1 / 4), -math.log2(4 / 4), -math.log2(1 / 4)])
    assert novelty(tops, pop, 4) == pytest.approx(expected)


def test_all_metrics_keys_and_perfect_ranking():
    scores = np.eye(3)
    m = all_metrics(scores, np.arange(3), np.ones(3), 3)
    assert m["ndcg@10"] == 1.0 and m["hr@10"] == 1.0 and m["mrr"] == 1.0
    assert {"recall@50", "coverage@10", "novelty@10"} <= set(m)
