"""Order-independent exponential decay with a fixed landmark per epoch.

A contribution ``w`` at time ``t`` is stored as ``w * 2**((t - start(epoch)) / half_life)`` in the
epoch containing ``t``; additions commute, so replays in any order give the same sum. Reading at
``now`` multiplies by ``2**(-(now - start) / half_life)``. An epoch spans EPOCH_HALF_LIVES half-lives,
so stored values stay below 2**16 times their raw weight; readers combine the last two epochs.

Example:
    >>> e = epoch_of(100.0, 10.0); round(decayed(grow(1.0, 100.0, 10.0), e, 110.0, 10.0), 3)
    0.5
"""

from __future__ import annotations

EPOCH_HALF_LIVES = 16


def epoch_len(half_life_s: float) -> float:
    return EPOCH_HALF_LIVES * half_life_s


def epoch_of(ts: float, half_life_s: float) -> int:
    return int(ts // epoch_len(half_life_s))


def grow(weight: float, ts: float, half_life_s: float) -> float:
    """The stored (landmark-scaled) value of ``weight`` observed at ``ts``."""
    start = epoch_of(ts, half_life_s) * epoch_len(half_life_s)
    return weight * 2.0 ** ((ts - start) / half_life_s)


def decayed(stored: float, epoch: int, now: float, half_life_s: float) -> float:
    """The value at ``now`` of a stored sum in ``epoch``."""
    return stored * 2.0 ** (-(now - epoch * epoch_len(half_life_s)) / half_life_s)


def epoch_weight(epoch: int, now: float, half_life_s: float) -> float:
    return 2.0 ** (-(now - epoch * epoch_len(half_life_s)) / half_life_s)
