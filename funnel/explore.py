"""Exploration slots: Thompson sampling over Beta posteriors, each pick with its propensity.

The pick for a slot is the argmax of one posterior draw. Its propensity is the probability that
Thompson sampling picks that item for that slot given the earlier picks, estimated from ``draws``
further posterior draws (independent of the deciding draw, so 1/propensity is not biased down;
floored at 1/draws).

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> picks = thompson_slots(["a", "b"], np.array([50., 1.]), np.array([1., 50.]), 1, rng)
    >>> picks[0][0], picks[0][1] > 0.9
    ('a', True)
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]


def thompson_slots(item_ids: list[str], alpha: npt.ArrayLike, beta: npt.ArrayLike, slots: int,
                   rng: np.random.Generator, draws: int = 256) -> list[tuple[str, float]]:
    """Up to ``slots`` distinct (item_id, propensity) picks from the pool ``item_ids``."""
    if not item_ids or slots <= 0:
        return []
    a = np.maximum(np.asarray(alpha, np.float64), 1e-3)
    b = np.maximum(np.asarray(beta, np.float64), 1e-3)
    samples = rng.beta(a, b, size=(draws + slots, len(item_ids)))
    alive = np.ones(len(item_ids), bool)
    picks: list[tuple[str, float]] = []
    for s in range(min(slots, len(item_ids))):
        masked = np.where(alive, samples, -1.0)
        pick = int(masked[s].argmax())  # the draw that decides; the others estimate its probability
        propensity = float(np.mean(masked[slots:].argmax(axis=1) == pick))
        picks.append((item_ids[pick], max(propensity, 1.0 / draws)))
        alive[pick] = False
    return picks


def slot_positions(n: int, slots: int, reference: int | None = None) -> list[int]:
    """Where exploration slots go: spread evenly over a feed of ``reference`` items (default ``n``),
    never at the top, at most a fifth of it; positions past ``n`` are dropped. With a fixed
    ``reference`` (the feed size) the first items of a feed do not depend on how many were asked for."""
    ref = reference or n
    slots = min(slots, ref // 5)
    if slots <= 0:
        return []
    return sorted(p for p in {max(1, ref * (j + 1) // (slots + 1)) for j in range(slots)} if p < n)
