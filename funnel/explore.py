"""Exploration slots: Thompson sampling over Beta posteriors (or uniform), each pick with its propensity.

Slate Thompson sampling: one draw from every posterior in the pool, the largest ``slots`` draws fill
the exploration slots in order. A pick's propensity is the exact marginal probability that the policy
puts that item in that slot (``models.thompson.rank_probabilities``, by quadrature; an estimate from
a few hundred draws made 1/propensity about 10% too high). ``uniform`` picks a uniformly random
ordered sample of the pool: every item has probability 1/|pool| in every slot.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> picks = thompson_slots(["a", "b"], np.array([50., 1.]), np.array([1., 50.]), 1, rng)
    >>> picks[0][0], picks[0][1] > 0.9
    ('a', True)
"""

from __future__ import annotations

import functools
from typing import Literal

import numpy as np
import numpy.typing as npt

from models.thompson import rank_probabilities

F64 = npt.NDArray[np.float64]
Policy = Literal["thompson", "uniform"]
MIN_PROPENSITY = 1e-9  # a pick the quadrature calls impossible (p < 1e-9): logged at this floor


def _posteriors(alpha: npt.ArrayLike, beta: npt.ArrayLike) -> tuple[F64, F64]:
    return (np.maximum(np.asarray(alpha, np.float64), 1e-3), np.maximum(np.asarray(beta, np.float64), 1e-3))


def personal_prior(alpha: npt.ArrayLike, beta: npt.ArrayLike, scores: npt.ArrayLike, prior_alpha: float,
                   prior_beta: float, strength: float, max_z: float = 3.0) -> tuple[F64, F64]:
    """Posteriors whose flat Beta(prior_alpha, prior_beta) prior is replaced by a personalised one: its
    mean m is the flat mean times ``exp(strength * t)`` (capped below 1), ``t`` the traffic-weighted tilt
    (``tilt``) of ``z``, the item's ranker score for this user standardised over the pool (clipped to
    +-``max_z``; NaN, an item the ranker did not score, counts as 0). The prior keeps the flat strength
    n0 = prior_alpha + prior_beta while n0 * m >= prior_alpha; below, its alpha stays prior_alpha and
    beta grows to give the mean m (an alpha under 1 would make the density unbounded at 0, where the
    propensity quadrature fails). The counts (alpha - prior_alpha clicks, beta - prior_beta non-clicks)
    are kept. A new item is explored first where the ranker expects this user to like it, and is never
    pushed below the flat prior. Still independent Betas: the propensities stay exact."""
    a, b = _posteriors(alpha, beta)
    s = np.asarray(scores, np.float64)
    if strength <= 0 or len(s) < 2:
        return a, b
    finite = np.isfinite(s)
    sd = float(np.std(s[finite])) if finite.sum() > 1 else 0.0
    if sd <= 1e-12:
        return a, b
    z = np.clip(np.where(finite, (s - float(np.mean(s[finite]))) / sd, 0.0), -max_z, max_z)
    n0 = prior_alpha + prior_beta
    mean = np.minimum(prior_alpha / n0 * np.exp(strength * tilt(z, a + b - n0, n0)), 0.95)
    a0 = np.maximum(n0 * mean, prior_alpha)
    return _posteriors(a - prior_alpha + a0, b - prior_beta + a0 * (1.0 - mean) / mean)


def tilt(z: F64, impressions: npt.ArrayLike, n0: float) -> F64:
    """The standardised score ``z`` weighted by the item's traffic (``impressions`` in the segment):
    a score below the pool's (z < 0) counts by n / (n + n0), so an item without traffic is never pushed
    below the flat prior (its low score is mostly the ranker's bias against missing engagement
    features); a score above counts by n0 / (n0 + n), so the ranker's optimism (up to ~20 invented
    clicks) fades as the item's own record grows and cannot bury a new item under items whose counts
    already say no."""
    n = np.maximum(np.asarray(impressions, np.float64), 0.0)
    return np.where(z < 0, z * n / (n + n0), z * n0 / (n0 + n))


def thompson_slots(item_ids: list[str], alpha: npt.ArrayLike, beta: npt.ArrayLike, slots: int,
                   rng: np.random.Generator) -> list[tuple[str, float]]:
    """Up to ``slots`` distinct (item_id, propensity) picks from the pool ``item_ids``, in slot order."""
    picks, _ = explore_slots("thompson", item_ids, alpha, beta, slots, rng)
    return picks


def uniform_slots(item_ids: list[str], slots: int, rng: np.random.Generator) -> list[tuple[str, float]]:
    """A uniformly random ordered sample: each item has probability 1/|pool| in each slot."""
    slots = min(slots, len(item_ids))
    if slots <= 0:
        return []
    order = rng.permutation(len(item_ids))[:slots]
    return [(item_ids[int(j)], 1.0 / len(item_ids)) for j in order]


def explore_slots(policy: Policy, item_ids: list[str], alpha: npt.ArrayLike, beta: npt.ArrayLike,
                  slots: int, rng: np.random.Generator) -> tuple[list[tuple[str, float]], F64]:
    """The picks and the policy's whole distribution: ``probs[k, i]`` for pool item ``i`` in slot ``k``
    (computed once: the picks' propensities are its entries)."""
    slots = min(slots, len(item_ids))
    if slots <= 0:
        return [], np.zeros((0, len(item_ids)))
    if policy == "uniform":
        return uniform_slots(item_ids, slots, rng), np.full((slots, len(item_ids)), 1.0 / len(item_ids))
    a, b = _posteriors(alpha, beta)
    order = np.argsort(-rng.beta(a, b), kind="stable")[:slots]
    probs = _rank_probabilities(a.tobytes(), b.tobytes(), slots)
    return [(item_ids[j], max(float(probs[r, j]), MIN_PROPENSITY)) for r, j in enumerate(order)], probs


@functools.lru_cache(maxsize=2048)
def _rank_probabilities(alpha: bytes, beta: bytes, slots: int) -> F64:
    """``rank_probabilities`` memoised by the pool's exact posteriors (float64 bytes): requests whose
    pools hold the same counts (shared fresh/popular lists, counts cached for a second) share the
    quadrature. Read-only: every caller gets the same array."""
    probs = rank_probabilities(np.frombuffer(alpha), np.frombuffer(beta), slots)
    probs.setflags(write=False)
    return probs


def slot_distribution(policy: Policy, alpha: npt.ArrayLike, beta: npt.ArrayLike, slots: int) -> F64:
    """``out[k, i]``: the probability that the policy shows pool item ``i`` in exploration slot ``k``
    (what an off-policy estimate of a stochastic target needs)."""
    n = len(np.atleast_1d(np.asarray(alpha)))
    slots = min(slots, n)
    if policy == "uniform":
        return np.full((slots, n), 1.0 / max(n, 1))
    return rank_probabilities(*_posteriors(alpha, beta), slots)


def slot_positions(n: int, slots: int, reference: int | None = None) -> list[int]:
    """Where exploration slots go: spread evenly over a feed of ``reference`` items (default ``n``),
    never at the top, at most a fifth of it; positions past ``n`` are dropped. With a fixed
    ``reference`` (the feed size) the first items of a feed do not depend on how many were asked for."""
    ref = reference or n
    slots = min(slots, ref // 5)
    if slots <= 0:
        return []
    return sorted(p for p in {max(1, ref * (j + 1) // (slots + 1)) for j in range(slots)} if p < n)
