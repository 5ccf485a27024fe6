"""Exact slate-Thompson pick probabilities: against a brute-force integral and against sampling."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from scipy.special import betainc

from funnel.explore import personal_prior, slot_distribution, thompson_slots, uniform_slots
from models import thompson
from models.thompson import rank_probabilities


@functools.cache
def _reference(pool: int, ranks: int = 3) -> np.ndarray:
    """The same integral on a 50,000-point uniform grid with exact CDFs (slow, obviously right)."""
    a, b = _pools()[pool]
    x = np.linspace(0.0, 1.0, 50_001)
    cdf = betainc(a[:, None], b[:, None], x[None, :])
    out = np.zeros((ranks, len(a)))
    for i in range(len(a)):
        others = np.delete(cdf, i, axis=0)
        poly = np.zeros((ranks, len(x)))
        poly[0] = 1.0
        for f in others:  # Poisson-binomial of "exceeds x", truncated at ranks - 1
            poly[1:] = poly[1:] * f + poly[:-1] * (1.0 - f)
            poly[0] *= f
        d = np.diff(cdf[i])
        out[:, i] = np.sum(d * 0.5 * (poly[:, 1:] + poly[:, :-1]), axis=1)
    return out


def _pools() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    imps = rng.integers(0, 400, 30)
    clicks = rng.binomial(imps, rng.uniform(0.01, 0.1, 30))
    fresh_a, fresh_b = np.ones(30), np.full(30, 20.0)
    fresh_a[:4] += [2, 0, 1, 3]
    fresh_b[:4] += [30, 10, 5, 60]
    return [(1.0 + clicks, 20.0 + imps - clicks), (fresh_a, fresh_b), (np.ones(12), np.full(12, 20.0))]


@pytest.mark.parametrize("pool", range(3))
@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_rank_probabilities_match_a_brute_force_integral(pool: int, ranks: int):
    a, b = _pools()[pool]
    got, ref = rank_probabilities(a, b, ranks), _reference(pool)[:ranks]
    big = ref > 1e-4
    assert np.all(np.abs(got - ref)[big] < 0.01 * ref[big]), np.max(np.abs(got - ref)[big] / ref[big])
    assert np.allclose(got.sum(axis=1), 1.0)


def _top2(a: np.ndarray, b: np.ndarray, draws: int, seed: int) -> np.ndarray:
    """The policy's picks, vectorised: the two largest of one joint posterior draw, ``draws`` times."""
    samples = np.random.default_rng(seed).beta(a, b, size=(draws, len(a)))
    return np.argsort(-samples, axis=1, kind="stable")[:, :2]


def test_inverse_propensity_of_thompson_picks_is_unbiased():
    """E[1 / p(pick)] over the policy's own picks is the number of items it can pick: the
    256-draw estimate this replaces was about 10% high here."""
    a, b = _pools()[1]
    probs = rank_probabilities(a, b, 2)
    picks = _top2(a, b, 400_000, 1)
    inv = 1.0 / np.stack([probs[0, picks[:, 0]], probs[1, picks[:, 1]]], axis=1)
    support = (probs > 1e-9).sum(axis=1)
    se = inv.std(axis=0) / np.sqrt(len(inv))
    assert np.all(np.abs(inv.mean(axis=0) - support) < 4 * se + 0.01 * support), (inv.mean(axis=0), support)


def test_slot_distribution_is_what_thompson_slots_samples():
    a, b = _pools()[0]
    ids = [f"i{j}" for j in range(len(a))]
    dist = slot_distribution("thompson", a, b, 2)
    picks, draws = _top2(a, b, 200_000, 2), 200_000
    freq = np.stack([np.bincount(picks[:, k], minlength=len(a)) / draws for k in range(2)])
    se = np.sqrt(dist * (1 - dist) / draws)
    assert np.all(np.abs(freq - dist) < 4.5 * se + 1e-4)
    rng = np.random.default_rng(3)
    for _ in range(50):  # what serving calls: the same draw-then-rank policy, propensities from dist
        got = thompson_slots(ids, a, b, 2, rng)
        assert len({i for i, _ in got}) == 2
        assert [p for _, p in got] == pytest.approx([dist[k, ids.index(i)] for k, (i, _) in enumerate(got)])


def test_uniform_exploration_has_flat_propensities():
    ids = [f"i{j}" for j in range(7)]
    picks = uniform_slots(ids, 3, np.random.default_rng(3))
    assert len({i for i, _ in picks}) == 3 and all(p == pytest.approx(1 / 7) for _, p in picks)
    assert np.allclose(slot_distribution("uniform", np.ones(7), np.ones(7), 3), 1 / 7)


def test_personal_prior_tilts_the_prior_mean_by_score_weighted_by_traffic_and_keeps_the_counts():
    """Mean 1/21 times exp(t), strength n0 = 21 where that keeps alpha >= 1 (else alpha 1 and a larger
    beta). t: a new item's z where it is above the pool's, 0 (the flat prior) where below; an item with
    n impressions: z * n / (n + 21) below, z * 21 / (21 + n) above. The counts (alpha - 1 clicks,
    beta - 20 non-clicks) stay; strength 0 or scores without spread give the flat prior back."""
    alpha = np.array([1.0, 1.0, 1.0, 31.0, 1.0, 3.0])
    beta = np.array([20.0, 20.0, 20.0, 990.0, 83.0, 39.0])  # impressions 0, 0, 0, 1000, 82, 20
    scores = np.array([-1.0, 0.0, 1.0, 0.0, -1.0, 1.0])
    a, b = personal_prior(alpha, beta, scores, 1.0, 20.0, 1.0)
    z = (scores - scores.mean()) / scores.std()
    n = alpha + beta - 21.0
    t = np.where(z < 0, z * n / (n + 21.0), z * 21.0 / (21.0 + n))
    assert t[0] == 0.0 and t[2] == pytest.approx(z[2]) and 0 > t[4] > z[4] and 0 < t[5] < z[5]
    counts = np.array([0.0, 0.0, 0.0, 30.0, 0.0, 2.0])
    a0 = a - counts  # the prior part of each posterior
    b0 = b - (n - counts)
    assert np.allclose(a0 / (a0 + b0), np.exp(t) / 21.0)
    assert a[0] == pytest.approx(1.0) and b[0] == pytest.approx(20.0)  # new, low score: the flat prior
    assert a[2] + b[2] == pytest.approx(21.0) and a[2] == pytest.approx(21.0 * np.exp(z[2]) / 21.0)
    assert a0[4] == pytest.approx(1.0) and a0[4] + b0[4] > 21.0  # below the flat mean: alpha stays 1
    assert a[3] + b[3] == pytest.approx(1021.0)  # the counts are kept
    assert np.all(a >= 1.0)
    for flat in (personal_prior(alpha, beta, scores, 1.0, 20.0, 0.0),
                 personal_prior(alpha, beta, np.full(6, 0.3), 1.0, 20.0, 1.0),
                 personal_prior(alpha, beta, np.full(6, np.nan), 1.0, 20.0, 1.0)):
        assert np.allclose(flat[0], alpha) and np.allclose(flat[1], beta)
    a, _ = personal_prior(alpha, beta, np.array([np.nan, -1.0, 1.0, 0.0, 0.0, 0.0]), 1.0, 20.0, 1.0)
    assert a[0] == pytest.approx(1.0)  # an unscored item keeps the flat prior's mean (z = 0)


def test_personal_prior_does_not_bury_a_new_item_the_ranker_scores_low():
    """A brand-new item (no traffic, a below-average score: no engagement features yet) in a pool of
    items with 50 impressions and no clicks whose scores spread up to z = 3: it stays the likeliest first
    pick with most of the flat prior's chance (0.31; the two-sided tilt it replaces gave it 0.06 and made
    the top-scored old item the likeliest)."""
    scores = np.append(np.linspace(-3.0, 3.0, 40), -0.5)
    alpha, beta = np.ones(41), np.append(np.full(40, 70.0), 20.0)
    flat = slot_distribution("thompson", alpha, beta, 1)[0, -1]
    personal = slot_distribution("thompson", *personal_prior(alpha, beta, scores, 1.0, 20.0, 1.0), 1)[0]
    assert flat > 0.3 and personal[-1] > 0.8 * flat and int(np.argmax(personal)) == 40


def test_personal_prior_explores_new_items_the_user_is_likely_to_click():
    """Ten new items (no counts) whose true click probabilities follow the ranker's scores: Thompson
    over the personalised prior picks items with about twice the click probability a flat prior (or
    uniform) does, and its propensities are still the exact slot distribution of its posteriors."""
    true_p = np.geomspace(0.01, 0.2, 10)
    scores = np.log(true_p) + np.random.default_rng(0).normal(0, 0.3, 10)  # a noisy ranker
    alpha, beta = np.ones(10), np.full(10, 20.0)
    a, b = personal_prior(alpha, beta, scores, 1.0, 20.0, 1.0)
    personal = slot_distribution("thompson", a, b, 2)
    flat = slot_distribution("thompson", alpha, beta, 2)
    assert float(personal[0] @ true_p) > 1.8 * float(flat[0] @ true_p)
    ids = [f"i{j}" for j in range(10)]
    rng = np.random.default_rng(4)
    picks = [thompson_slots(ids, a, b, 2, rng) for _ in range(3000)]
    freq = np.bincount([ids.index(p[0][0]) for p in picks], minlength=10) / len(picks)
    assert np.all(np.abs(freq - personal[0]) < 4.5 * np.sqrt(personal[0] * (1 - personal[0]) / 3000) + 1e-3)


@pytest.mark.parametrize("pool", range(3))
@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_items_with_the_same_posterior_are_integrated_once(pool: int, ranks: int) -> None:
    """A pool's distinct posteriors are integrated once each, weighted by how many items share them
    (pools 1 and 2: 26 and 12 items on the flat prior): the same probabilities as integrating every
    item on its own, to rounding (relative 1e-12)."""
    a, b = _pools()[pool]
    a, b = np.append(a, a[:5]), np.append(b, b[:5])  # some items with counts of their own, twice
    keep, left = thompson._contenders(a, b, ranks)
    apart = np.zeros((ranks, len(a)))
    apart[:, keep] = thompson._integrate(a[keep], b[keep], left, ranks)
    apart /= apart.sum(axis=1, keepdims=True)
    got = rank_probabilities(a, b, ranks)
    assert len(set(zip(a.tolist(), b.tolist(), strict=True))) < len(a)
    np.testing.assert_allclose(got, apart, rtol=1e-12, atol=1e-300)
    np.testing.assert_array_equal(got[:, -5:], got[:, :5])
