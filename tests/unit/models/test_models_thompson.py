"""Exact slate-Thompson pick probabilities: against a brute-force integral and against sampling."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from scipy.special import betainc

from funnel.explore import slot_distribution, thompson_slots, uniform_slots
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
