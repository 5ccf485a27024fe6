"""Exact pick probabilities of slate Thompson sampling over independent Beta posteriors.

Slate Thompson sampling draws once from every posterior and shows the ``s`` largest draws in order.
The probability that item ``i`` lands at rank ``r`` (0 = the largest draw) is

    P(i at rank r) = integral f_i(x) * P(exactly r of the other draws exceed x) dx

computed here by quadrature, not by sampling (1 / an estimated probability is biased up: with 256
draws by about (1 - p) / (256 p), +20% at p = 0.02). The inner probability is a Poisson-binomial
over the other items, obtained leave-one-out from the elementary symmetric polynomials of the odds
(1 - F_j) / F_j. The grid is built from every item's own scale (mean +- 6 sd), a uniform grid, and
a refinement at the quantiles of the top-``s`` order statistics, where the integrand changes
fastest; CDF increments come from Simpson's rule on the densities (``betainc`` only at the left end).
Relative error is below about 1% for probabilities above 1e-4 (tested against a fine reference).

Example:
    >>> p = rank_probabilities([50.0, 1.0], [1.0, 50.0], ranks=1)
    >>> round(float(p[0, 0]), 3), round(float(p[0, 1]), 3)
    (1.0, 0.0)
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.special import betainc, betaln

F64 = npt.NDArray[np.float64]
Z_ITEM = np.linspace(-6.0, 6.0, 14)
Z_COARSE = np.linspace(-6.0, 6.0, 5)
UNIFORM_POINTS = 32
# order-statistic CDF levels the grid is refined at: linear, and geometric in the lower tail, where an
# item that rarely wins collects most of its probability and the integrand grows exponentially
LEVELS = np.concatenate([np.geomspace(1e-7, 0.015, 24), np.linspace(0.0, 1.0, 66)[1:-1]])
TAIL_SD = 14.0  # the grid reaches mean + 14 sd: the maximum of 50 draws still fits below
CLIP = 1e-12


def rank_probabilities(alpha: npt.ArrayLike, beta: npt.ArrayLike, ranks: int) -> F64:
    """``out[r, i]`` = probability that item ``i`` has the ``r``-th largest of one joint draw, for
    ``r < ranks``. Each row sums to 1 (renormalised; the quadrature error is about 1e-3)."""
    a = np.maximum(np.asarray(alpha, np.float64), 1e-3)
    b = np.maximum(np.asarray(beta, np.float64), 1e-3)
    n, ranks = len(a), min(ranks, len(a))
    out = np.zeros((ranks, n))
    if n == 0 or ranks <= 0:
        return out
    if n == 1:
        out[0, 0] = 1.0
        return out
    keep, lo = _contenders(a, b, ranks)
    pairs, which, counts = np.unique(np.stack([a[keep], b[keep]], axis=1), axis=0, return_inverse=True,
                                     return_counts=True)
    probs = _integrate(pairs[:, 0], pairs[:, 1], lo, ranks, counts.astype(np.float64))
    out[:, keep] = probs[:, which.reshape(-1)]
    return np.asarray(out / np.maximum(out.sum(axis=1, keepdims=True), 1e-300), np.float64)


def _moments(a: F64, b: F64) -> tuple[F64, F64]:
    mean = a / (a + b)
    return mean, np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1.0)))


def _contenders(a: F64, b: F64, ranks: int) -> tuple[npt.NDArray[np.int64], float]:
    """Items that can reach the top ``ranks`` and the grid's left end: below the ``ranks``-th largest
    lower bound (mean - 6 sd), at least ``ranks`` draws are above almost surely."""
    mean, sd = _moments(a, b)
    low = np.maximum(mean - 6.0 * sd, 0.0)
    left = float(np.sort(low)[-ranks]) if len(a) > ranks else 0.0
    keep = np.flatnonzero(np.minimum(mean + TAIL_SD * sd, 1.0) > left)
    return keep, left


def _grid(a: F64, b: F64, left: float, z: F64 = Z_ITEM) -> F64:
    mean, sd = _moments(a, b)
    right = min(1.0, float((mean + TAIL_SD * sd).max()))
    own = (mean[:, None] + sd[:, None] * z[None, :]).ravel()
    points = np.concatenate([own, np.linspace(left, right, UNIFORM_POINTS)])
    return np.unique(np.clip(points, left, right))


def _cdf(a: F64, b: F64, x: F64, start: F64) -> tuple[F64, F64]:
    """CDFs on ``x`` (items x points) and their increments, by Simpson's rule on the densities."""
    norm = betaln(a, b)[:, None]

    def pdf(points: F64) -> F64:
        lx = np.log(np.maximum(points, 1e-300))[None, :]
        l1 = np.log1p(-np.minimum(points, 1.0 - 1e-16))[None, :]
        return np.asarray(np.exp((a[:, None] - 1.0) * lx + (b[:, None] - 1.0) * l1 - norm), np.float64)

    mids = 0.5 * (x[1:] + x[:-1])
    fx = pdf(x)
    d = np.diff(x)[None, :] / 6.0 * (fx[:, :-1] + 4.0 * pdf(mids) + fx[:, 1:])
    cdf = np.minimum(np.concatenate([start[:, None], start[:, None] + np.cumsum(d, axis=1)], axis=1), 1.0)
    return cdf, d


def _elementary(odds: F64, ranks: int, counts: F64) -> list[F64]:
    """e_0..e_{ranks-1} of the odds over all items (Newton's identities), one row per grid point;
    row ``u`` of ``odds`` stands for ``counts[u]`` items."""
    powers = [counts @ odds ** k for k in range(1, ranks)]
    e = [np.ones(odds.shape[1])]
    for r in range(1, ranks):
        acc = sum(((-1) ** (k - 1)) * e[r - k] * powers[k - 1] for k in range(1, r + 1))
        e.append(np.asarray(acc, np.float64) / r)
    return e


def _parts(cdf: F64, ranks: int, counts: F64) -> tuple[F64, F64, F64, list[F64]]:
    f = np.maximum(cdf, CLIP)
    logs = np.log(f)
    odds = 1.0 / f - 1.0
    return logs, counts @ logs, odds, _elementary(odds, ranks, counts)


def _order_cdfs(cdf: F64, ranks: int, counts: F64) -> tuple[F64, F64]:
    """The CDFs of the largest and of the ``ranks``-th largest draw (where the grid is refined)."""
    _, total, _, e_all = _parts(cdf, 1 if ranks == 1 else ranks, counts)
    first = np.exp(total)
    return first, np.asarray(first * np.sum(e_all, axis=0), np.float64)


def _leave_one_out(cdf: F64, ranks: int, counts: F64) -> list[F64]:
    """P(exactly r of the OTHER draws exceed x), per item and point, for r < ranks (one of the
    ``counts[u]`` items of row ``u`` left out)."""
    logs, total, odds, e_all = _parts(cdf, ranks, counts)
    base = np.exp(total[None, :] - logs)
    loo, prev = [base], None
    for r in range(1, ranks):
        prev = e_all[r][None, :] - odds * (1.0 if prev is None else prev)
        loo.append(base * prev)
    return loo


def _integrate(a: F64, b: F64, left: float, ranks: int, counts: F64 | None = None) -> F64:
    """Per rank, the probability of each posterior (a, b); each stands for ``counts`` items of the
    pool (default one each): items with the same posterior (new items on the flat prior, the same
    counts) have the same probabilities, so each distinct one is integrated once."""
    counts = np.ones(len(a)) if counts is None else counts
    start = np.asarray(betainc(a, b, left), np.float64)
    coarse = _grid(a, b, left, Z_COARSE)  # only to find where the order statistics change
    cdf, _ = _cdf(a, b, coarse, start)
    first, order = _order_cdfs(cdf, ranks, counts)
    levels = [first] if ranks == 1 else [first, order]
    extra = [np.interp(LEVELS, np.maximum.accumulate(c), coarse) for c in levels]
    x = np.unique(np.concatenate([_grid(a, b, left), *extra]))
    cdf, d = _cdf(a, b, x, start)
    loo = _leave_one_out(cdf, ranks, counts)
    return np.stack([np.sum(d * 0.5 * (t[:, 1:] + t[:, :-1]), axis=1) for t in loo])
