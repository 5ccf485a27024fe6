"""A/B statistics that stay valid when the report is read every hour: per-user metrics with delta-method
standard errors, the mixture sequential probability ratio test (mSPRT; Johari, Pekelis and Walsh,
"Always valid inference", 2017) with its confidence sequence, and the sample-ratio-mismatch check.

The mSPRT mixes the likelihood ratio of an asymptotically normal estimate ``d`` (variance ``v``) over
a N(0, tau^2) prior on the true difference:

    Lambda = sqrt(v / (v + tau^2)) * exp(d^2 tau^2 / (2 v (v + tau^2)))

``1 / Lambda`` is an always-valid p-value (its running minimum over looks is still a p-value), and
``{d : Lambda < 1/alpha}`` a confidence sequence: a (1 - alpha) interval that covers the truth at
every look at once. Fixed-horizon intervals are reported beside it for reference only.

Example:
    >>> t = always_valid_test(0.0, 1e-4, 1e-4, 0.05)
    >>> t.p_value
    1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

F64 = npt.NDArray[np.float64]
SRM_ALPHA = 0.001  # the usual threshold: a real imbalance is glaring, so false alarms must be rare
Z95 = 1.959963984540054


@dataclass(frozen=True)
class SequentialTest:
    estimate: float
    var: float
    ci: tuple[float, float]  # the confidence sequence at this look
    p_value: float  # always valid at this look (take the running minimum across looks)


def always_valid_test(diff: float, var: float, tau2: float, alpha: float = 0.05) -> SequentialTest:
    if not np.isfinite(var) or var <= 0 or tau2 <= 0:
        return SequentialTest(diff, var, (-np.inf, np.inf), 1.0)
    log_lr = 0.5 * np.log(var / (var + tau2)) + diff ** 2 * tau2 / (2.0 * var * (var + tau2))
    half = np.sqrt(2.0 * var * (var + tau2) / tau2 * (np.log(1.0 / alpha) + 0.5 * np.log((var + tau2) / var)))
    p = float(min(1.0, np.exp(-log_lr)))
    return SequentialTest(diff, var, (float(diff - half), float(diff + half)), p)


def running(tests: Sequence[SequentialTest]) -> list[SequentialTest]:
    """Each look with the running-minimum p-value and the running intersection of the sequences."""
    out: list[SequentialTest] = []
    p, lo, hi = 1.0, -np.inf, np.inf
    for t in tests:
        p, lo, hi = min(p, t.p_value), max(lo, t.ci[0]), min(hi, t.ci[1])
        out.append(SequentialTest(t.estimate, t.var, (float(lo), float(hi)), float(p)))
    return out


@dataclass(frozen=True)
class Stat:
    """A per-arm metric: its value, standard error and the number of users it comes from."""

    value: float
    se: float
    users: int


def ratio(num: npt.ArrayLike, den: npt.ArrayLike) -> Stat:
    """sum(num) / sum(den) over users (e.g. clicks / impressions), with the delta-method standard
    error that treats the user, not the impression, as the independent unit."""
    n, d = np.asarray(num, np.float64), np.asarray(den, np.float64)
    users = len(d)
    if users == 0 or d.sum() <= 0:
        return Stat(float("nan"), float("inf"), users)
    r = float(n.sum() / d.sum())
    if users < 2:
        return Stat(r, float("inf"), users)
    resid = n - r * d
    se = float(np.sqrt(np.sum(resid ** 2) / (users * (users - 1))) / d.mean())
    return Stat(r, se, users)


def mean(values: npt.ArrayLike) -> Stat:
    """The mean of per-user values with its standard error."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return Stat(float(v.mean()) if len(v) else float("nan"), float("inf"), len(v))
    return Stat(float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))), len(v))


@dataclass(frozen=True)
class Comparison:
    """Treatment against control for one metric. ``declared`` is the arm that the always-valid test
    finds better (``higher_is_better`` says which direction is good), or None."""

    control: float
    treatment: float
    diff: float
    relative: float
    ci: tuple[float, float]
    confidence_sequence: tuple[float, float]
    p_value: float
    p_always_valid: float
    declared: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def look(self) -> SequentialTest:
        """This comparison as a look of the sequential test (the ``history`` of the next one)."""
        return SequentialTest(self.diff, 0.0, self.confidence_sequence, self.p_always_valid)


def compare(control: Stat, treatment: Stat, alpha: float = 0.05, tau_rel: float = 0.1,
            higher_is_better: bool = True, history: Sequence[SequentialTest] = ()) -> Comparison:
    """``tau_rel``: the mixing scale as a share of the control's value (the effect size one hopes to
    see); ``history``: this metric's earlier looks, so the p-value and sequence carry over."""
    diff = treatment.value - control.value
    var = control.se ** 2 + treatment.se ** 2
    tau2 = (tau_rel * abs(control.value)) ** 2 if control.value else tau_rel ** 2
    look = running([*history, always_valid_test(diff, var, tau2, alpha)])[-1]
    se = float(np.sqrt(var))
    p_fixed = float(2 * stats.norm.sf(abs(diff) / se)) if se > 0 and np.isfinite(se) else 1.0
    declared = None
    if look.p_value < alpha:
        declared = "treatment" if (diff > 0) == higher_is_better else "control"
    rel = diff / control.value if control.value else float("nan")
    return Comparison(control.value, treatment.value, diff, rel, (diff - Z95 * se, diff + Z95 * se),
                      look.ci, p_fixed, look.p_value, declared)


@dataclass(frozen=True)
class SampleRatio:
    observed: dict[str, int]
    expected: dict[str, float]
    chi2: float
    p_value: float
    mismatch: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sample_ratio(counts: dict[str, int], shares: dict[str, float]) -> SampleRatio:
    """Pearson's chi-square of the users per arm against the configured shares; a mismatch
    (p < 0.001) means the assignment or the logging is broken and no metric of the run can be trusted."""
    names = list(shares)
    obs = np.array([counts.get(a, 0) for a in names], np.float64)
    share = np.array([shares[a] for a in names], np.float64)
    exp = obs.sum() * share / share.sum()
    if obs.sum() == 0 or len(names) < 2:
        return SampleRatio(dict(zip(names, obs.astype(int).tolist(), strict=True)),
                           dict(zip(names, exp.tolist(), strict=True)), 0.0, 1.0, False)
    chi2, p = stats.chisquare(obs, exp)
    return SampleRatio({a: int(o) for a, o in zip(names, obs, strict=True)},
                       {a: float(e) for a, e in zip(names, exp, strict=True)},
                       float(chi2), float(p), bool(p < SRM_ALPHA))
