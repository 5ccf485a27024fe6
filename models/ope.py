"""Off-policy estimators for feeds: IPS, self-normalised IPS and doubly robust, with 95% intervals and
the effective sample size. Pure numpy; the callers build the per-slot terms.

A log is ``R`` rounds (served feeds, or rows of a single-slot log) of up to ``K`` slots. Each logged
slot j of round r has a reward ``r`` (click), an importance weight ``w`` and the reward model's
prediction at the logged action ``q``; each round has the reward model's value of the target's whole
slate ``dm``. Two ways to build the weights, so that a policy changing one slot of ten is charged
for one slot, not ten:

- per slot (:func:`per_slot_terms`): ``w = pi_j(a_j | x) / mu_j(a_j | x)``, the probabilities that
  the target / logging policy show the logged item in slot j (Li et al. 2018, "independent item");
- position-based (:func:`position_based_terms`): under the position-based click model a click at
  slot j measures ``theta_j * relevance``, so an item the target shows at another slot k is still
  supported: ``w = (sum_k pi(a_j at k) theta_k) / (theta_j * m(a_j | x))`` with ``m`` the
  probability that the logging policy shows the item anywhere in the feed.

Values are clicks per shown slot (CTR): ``sum_r y_r / sum_r slots_r`` with ``y_r``

    IPS: sum_j w r        DR: dm + sum_j w (r - q)

and SNIPS divides each group's weighted rewards by its control variate (whose expectation is known:
1 per slot, or ``sum_k theta_k`` per feed). Standard errors treat rounds as independent (slots of a
feed are correlated): the delta method for IPS and DR, a blocked jackknife for SNIPS.

Example:
    >>> t = per_slot_terms(reward=np.array([[1.0], [0.0]]), logging=np.array([[0.5], [0.5]]),
    ...                    target=np.array([[1.0], [0.0]]))
    >>> round(ips(t).value, 3)
    1.0
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
Z95 = 1.959963984540054
JACKKNIFE_BLOCKS = 50


@dataclass(frozen=True)
class Estimate:
    """A policy value (clicks per slot) with its standard error, 95% interval, effective sample size
    (Kish, over the slot weights) and the number of rounds."""

    value: float
    se: float
    ci: tuple[float, float]
    ess: float
    rounds: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SlateTerms:
    """Aligned (R, K) arrays over logged slots, ``mask`` False for padding; per round ``dm`` and
    ``slots`` (the target's number of slots); for SNIPS, ``cv`` (R, K) with ``group`` (K,) and the
    known expectation of each round's group sums ``cv_expect`` (R, G)."""

    w: F64
    r: F64
    q: F64
    mask: npt.NDArray[np.bool_]
    dm: F64
    slots: F64
    cv: F64
    group: npt.NDArray[np.int64]
    cv_expect: F64

    @property
    def rounds(self) -> int:
        return len(self.slots)

    def take(self, rows: npt.NDArray[np.int64]) -> SlateTerms:
        return SlateTerms(self.w[rows], self.r[rows], self.q[rows], self.mask[rows], self.dm[rows],
                          self.slots[rows], self.cv[rows], self.group, self.cv_expect[rows])


def _arr(x: npt.ArrayLike | None, like: F64, fill: float = 0.0) -> F64:
    return np.full(like.shape, fill) if x is None else np.asarray(x, np.float64)


def per_slot_terms(reward: npt.ArrayLike, logging: npt.ArrayLike, target: npt.ArrayLike,
                   q: npt.ArrayLike | None = None, dm: npt.ArrayLike | None = None,
                   mask: npt.ArrayLike | None = None, slots: npt.ArrayLike | None = None) -> SlateTerms:
    """``logging`` / ``target``: each policy's probability of the logged item in its logged slot."""
    r = np.asarray(reward, np.float64)
    m = np.ones(r.shape, bool) if mask is None else np.asarray(mask, bool)
    mu = np.where(m, np.asarray(logging, np.float64), 1.0)
    w = np.where(m, np.asarray(target, np.float64) / np.maximum(mu, 1e-300), 0.0)
    n_slots = m.sum(axis=1).astype(np.float64) if slots is None else np.asarray(slots, np.float64)
    return SlateTerms(w, np.where(m, r, 0.0), np.where(m, _arr(q, r), 0.0), m,
                      _arr(dm, n_slots), n_slots, w, np.arange(r.shape[1]), m.astype(np.float64))


def position_based_terms(reward: npt.ArrayLike, theta_logged: npt.ArrayLike, in_feed: npt.ArrayLike,
                         target_exam: npt.ArrayLike, target_theta: npt.ArrayLike,
                         q: npt.ArrayLike | None = None, dm: npt.ArrayLike | None = None,
                         mask: npt.ArrayLike | None = None,
                         slots: npt.ArrayLike | None = None) -> SlateTerms:
    """``theta_logged``: examination of each logged slot; ``in_feed``: the logging probability that
    the logged item is in the feed at all; ``target_exam``: sum over the target's slots k of
    P_target(logged item at k) * theta_k; ``target_theta``: per round, sum of theta over the target's
    slots (the control variate's expectation)."""
    r = np.asarray(reward, np.float64)
    m = np.ones(r.shape, bool) if mask is None else np.asarray(mask, bool)
    th = np.where(m, np.asarray(theta_logged, np.float64), 1.0)
    denom = np.maximum(th * np.where(m, np.asarray(in_feed, np.float64), 1.0), 1e-300)
    w = np.where(m, np.asarray(target_exam, np.float64) / denom, 0.0)
    n_slots = m.sum(axis=1).astype(np.float64) if slots is None else np.asarray(slots, np.float64)
    return SlateTerms(w, np.where(m, r, 0.0), np.where(m, _arr(q, r), 0.0), m, _arr(dm, n_slots),
                      n_slots, w * th, np.zeros(r.shape[1], np.int64),
                      np.asarray(target_theta, np.float64)[:, None])


def effective_sample_size(t: SlateTerms) -> float:
    w = t.w[t.mask]
    sq = float(np.sum(w ** 2))
    return float(np.sum(w) ** 2 / sq) if sq > 0 else 0.0


def _ratio_estimate(y: F64, t: SlateTerms) -> Estimate:
    total = float(t.slots.sum())
    if total <= 0:
        return Estimate(float("nan"), float("inf"), (float("nan"), float("nan")), 0.0, t.rounds)
    value = float(y.sum() / total)
    n = len(y)
    resid = y - value * t.slots
    se = float(np.sqrt(np.sum(resid ** 2) * n / max(n - 1, 1))) / total
    return Estimate(value, se, (value - Z95 * se, value + Z95 * se), effective_sample_size(t), n)


def ips(t: SlateTerms) -> Estimate:
    return _ratio_estimate(np.sum(t.w * t.r, axis=1), t)


def dr(t: SlateTerms) -> Estimate:
    return _ratio_estimate(t.dm + np.sum(t.w * (t.r - t.q), axis=1), t)


def _snips_value(t: SlateTerms) -> float:
    groups = t.cv_expect.shape[1]
    num = np.zeros(groups)
    den = np.zeros(groups)
    np.add.at(num, t.group, np.sum(t.w * t.r, axis=0))
    np.add.at(den, t.group, np.sum(t.cv, axis=0))
    expect = t.cv_expect.sum(axis=0)
    scaled = np.where(den > 0, num * expect / np.maximum(den, 1e-300), 0.0)
    total = float(t.slots.sum())
    return float(scaled.sum() / total) if total > 0 else float("nan")


def snips(t: SlateTerms, blocks: int = JACKKNIFE_BLOCKS) -> Estimate:
    """Self-normalised IPS; SE by the delete-one-block jackknife over contiguous blocks of rounds."""
    value = _snips_value(t)
    b = min(blocks, t.rounds)
    if b < 2:
        return Estimate(value, float("inf"), (float("nan"), float("nan")), effective_sample_size(t), t.rounds)
    edges = np.linspace(0, t.rounds, b + 1).astype(np.int64)
    rows = np.arange(t.rounds)
    loo = np.array([_snips_value(t.take(np.concatenate([rows[:lo], rows[hi:]])))
                    for lo, hi in zip(edges[:-1], edges[1:], strict=True)])
    se = float(np.sqrt((b - 1) / b * np.sum((loo - loo.mean()) ** 2)))
    return Estimate(value, se, (value - Z95 * se, value + Z95 * se), effective_sample_size(t), t.rounds)


def switch_dr(t: SlateTerms, max_weight: float) -> Estimate:
    """SWITCH doubly robust (Wang, Agarwal and Dudik, 2017): the reward model's value of the target
    plus the weighted residuals of the logged slots whose weight is at most ``max_weight``; a slot the
    logging policy showed only with a tiny probability (weight above the cap) is left to the reward
    model, as an item it never showed is. One weight of 1,000 (an item the target shows for sure that
    the logging policy explored with probability 1e-3) otherwise moves a run's estimate by -q * 1,000
    when it is not clicked, or +1,000 * (1 - q) when it is: unbiased, but almost never near the truth."""
    keep = t.mask & (t.w <= max_weight)
    return dr(SlateTerms(np.where(keep, t.w, 0.0), t.r, t.q, keep, t.dm, t.slots, t.cv, t.group,
                         t.cv_expect))


def clipped_share(t: SlateTerms, max_weight: float) -> float:
    """The share of logged slots whose weight is above ``max_weight`` (left to the reward model)."""
    n = int(t.mask.sum())
    return float(np.sum(t.mask & (t.w > max_weight)) / n) if n else 0.0


def estimate_all(t: SlateTerms, max_weight: float | None = None) -> dict[str, Estimate]:
    """IPS, SNIPS and DR; with ``max_weight``, ``dr`` is the SWITCH DR and ``dr_uncapped`` the plain one."""
    out = {"ips": ips(t), "snips": snips(t), "dr": dr(t)}
    if max_weight is not None:
        out = {**out, "dr": switch_dr(t, max_weight), "dr_uncapped": out["dr"]}
    return out
