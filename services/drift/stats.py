"""Pure drift statistics (numpy/scipy): PSI, KS, CTR drop, embedding centroid shift.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> psi(rng.normal(0, 1, 5000), rng.normal(0, 1, 5000)) < 0.05
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import stats

Array = npt.NDArray[np.float64]
_EPS = 1e-4


def _psi_from_props(ref: Array, cur: Array) -> float:
    ref, cur = np.maximum(ref, _EPS), np.maximum(cur, _EPS)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def psi(reference: npt.ArrayLike, current: npt.ArrayLike, bins: int = 10) -> float:
    """Population stability index over quantile bins of the reference (0 = identical; >0.2 = drift)."""
    ref, cur = np.asarray(reference, dtype=np.float64), np.asarray(current, dtype=np.float64)
    if len(ref) == 0 or len(cur) == 0:
        return 0.0
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    ref_counts = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1)
    cur_counts = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1)
    return _psi_from_props(ref_counts / len(ref), cur_counts / len(cur))


def categorical_psi(reference: Sequence[str], current: Sequence[str]) -> float:
    """PSI over category labels (unseen labels in either sample get a small floor)."""
    if not reference or not current:
        return 0.0
    labels = sorted(set(reference) | set(current))
    index = {c: i for i, c in enumerate(labels)}
    ref = np.bincount([index[c] for c in reference], minlength=len(labels)) / len(reference)
    cur = np.bincount([index[c] for c in current], minlength=len(labels)) / len(current)
    return _psi_from_props(ref.astype(np.float64), cur.astype(np.float64))


def ks(reference: npt.ArrayLike, current: npt.ArrayLike) -> float:
    """Two-sample Kolmogorov-Smirnov statistic (max CDF gap, 0..1)."""
    ref, cur = np.asarray(reference, dtype=np.float64), np.asarray(current, dtype=np.float64)
    if len(ref) == 0 or len(cur) == 0:
        return 0.0
    return float(stats.ks_2samp(ref, cur).statistic)


def ks_lower(reference: npt.ArrayLike, current: npt.ArrayLike) -> float:
    """One-sided KS: how far the current CDF rises above the reference one (current values LOWER).

    A shift of the scores upwards (the model now predicts clicks better) gives 0."""
    ref = np.sort(np.asarray(reference, dtype=np.float64))
    cur = np.sort(np.asarray(current, dtype=np.float64))
    if len(ref) == 0 or len(cur) == 0:
        return 0.0
    grid = np.concatenate([ref, cur])
    cdf_cur = np.searchsorted(cur, grid, side="right") / len(cur)
    gap = cdf_cur - np.searchsorted(ref, grid, side="right") / len(ref)
    return float(max(0.0, gap.max()))


def relative_drop(reference: float, current: float) -> float:
    """How much lower ``current`` is than ``reference``, as a fraction (0 when not lower)."""
    if reference <= 0:
        return 0.0
    return float(max(0.0, (reference - current) / reference))


def centroid_shift(reference: npt.ArrayLike, current: npt.ArrayLike) -> float:
    """1 - cosine similarity between the mean vectors of two embedding samples ([n, d] each)."""
    ref, cur = np.asarray(reference, dtype=np.float64), np.asarray(current, dtype=np.float64)
    if ref.size == 0 or cur.size == 0:
        return 0.0
    a, b = ref.mean(axis=0), cur.mean(axis=0)
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return 0.0 if denom == 0 else float(1.0 - a @ b / denom)


def mean_pairwise_shift(reference: dict[str, npt.NDArray[np.float64]],
                        current: dict[str, npt.NDArray[np.float64]]) -> float:
    """Mean over keys present in both of ``1 - cos(centroid_ref[key], centroid_cur[key])``
    (e.g. per user: the items they engage with now vs then, in embedding space)."""
    shifts = [centroid_shift(reference[k], current[k]) for k in reference.keys() & current.keys()]
    return float(np.mean(shifts)) if shifts else 0.0
