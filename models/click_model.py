"""A position-based click model: the reward model of doubly robust off-policy estimates.

    P(click | context x, item i, position k) = theta_k * sigmoid(w . phi(x, i) + b),  theta_0 = 1

``theta_k`` is the probability that position ``k`` is examined (relative to the top), the sigmoid the
item's relevance for the context. Both are fitted together by maximum likelihood (L-BFGS, L2 on
``w``) on the logged slots; features are standardised, NaN counts as the mean. Examination never
rises down the list (``theta_k = theta_{k-1} * sigmoid(eta_k)``): without that constraint a slot that
always holds weaker items (an exploration slot) would pass its items' lower relevance off as a lower
examination.

Example:
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(4000, 1)); pos = rng.integers(0, 3, 4000)
    >>> clicks = rng.random(4000) < np.array([1.0, 0.6, 0.3])[pos] / (1 + np.exp(-x[:, 0]))
    >>> m = PositionBasedModel().fit(x, pos, clicks, 3)
    >>> bool(abs(m.theta_[1] - 0.6) < 0.1)
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize
from scipy.special import expit, logit

F64 = npt.NDArray[np.float64]
EPS = 1e-9


@dataclass
class PositionBasedModel:
    l2: float = 1.0
    max_iter: int = 300
    coef_: F64 = field(default_factory=lambda: np.zeros(0))
    intercept_: float = 0.0
    theta_: F64 = field(default_factory=lambda: np.ones(1))
    _mean: F64 = field(default_factory=lambda: np.zeros(0))
    _scale: F64 = field(default_factory=lambda: np.ones(0))

    def _design(self, x: npt.ArrayLike) -> F64:
        z = (np.asarray(x, np.float64) - self._mean) / self._scale
        return np.asarray(np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0), np.float64)

    def fit(self, x: npt.ArrayLike, positions: npt.ArrayLike, clicks: npt.ArrayLike,
            n_positions: int) -> PositionBasedModel:
        raw = np.asarray(x, np.float64)
        seen = np.maximum((~np.isnan(raw)).sum(axis=0), 1)
        self._mean = np.nansum(raw, axis=0) / seen  # an all-NaN column: mean 0, scale 1, weight ~0
        sd = np.sqrt(np.nansum((raw - self._mean) ** 2, axis=0) / seen)
        self._scale = np.where(sd > 1e-12, sd, 1.0)
        design = self._design(raw)
        pos = np.clip(np.asarray(positions, np.int64), 0, n_positions - 1)
        c = np.asarray(clicks, np.float64)
        d = design.shape[1]
        start = np.concatenate([np.zeros(d), [logit(np.clip(c.mean(), 1e-4, 0.5))],
                                np.full(max(n_positions - 1, 0), 2.0)])
        res = minimize(_nll, start, args=(design, pos, c, n_positions, self.l2), jac=True,
                       method="L-BFGS-B", options={"maxiter": self.max_iter})
        self.coef_, self.intercept_ = res.x[:d], float(res.x[d])
        self.theta_ = _theta(res.x[d + 1:])
        return self

    def relevance(self, x: npt.ArrayLike) -> F64:
        """The click probability at the top position (where theta = 1)."""
        return np.asarray(expit(self._design(x) @ self.coef_ + self.intercept_), np.float64)

    def raw_linear(self) -> tuple[F64, float]:
        """Weights and intercept on the raw (unstandardised) features: ``relevance(x) =
        sigmoid(x @ w + b)`` for x without NaNs (scores many items without building their rows)."""
        w = self.coef_ / self._scale
        return np.asarray(w, np.float64), float(self.intercept_ - np.sum(w * self._mean))

    def examination(self, positions: npt.ArrayLike) -> F64:
        pos = np.clip(np.asarray(positions, np.int64), 0, len(self.theta_) - 1)
        return np.asarray(self.theta_[pos], np.float64)

    def predict(self, x: npt.ArrayLike, positions: npt.ArrayLike) -> F64:
        return self.examination(positions) * self.relevance(x)


def _theta(eta: F64) -> F64:
    return np.asarray(np.concatenate([[1.0], np.cumprod(expit(eta))]), np.float64)


def _nll(params: F64, design: F64, pos: npt.NDArray[np.int64], c: F64, n_pos: int,
         l2: float) -> tuple[float, F64]:
    d = design.shape[1]
    w, b, eta = params[:d], params[d], params[d + 1:]
    theta = _theta(eta)
    s = expit(design @ w + b)
    th = theta[pos]
    p = np.clip(th * s, EPS, 1.0 - EPS)
    nll = -np.sum(c * np.log(p) + (1.0 - c) * np.log1p(-p)) + 0.5 * l2 * float(w @ w)
    dp = -(c / p - (1.0 - c) / (1.0 - p))
    dz = dp * th * s * (1.0 - s)
    grad_w = design.T @ dz + l2 * w
    # theta_k = prod_{i<=k} sigmoid(eta_i): d theta_k / d eta_i = theta_k (1 - sigmoid(eta_i)) for i <= k
    g = np.bincount(pos, weights=dp * s, minlength=n_pos)[1:] * theta[1:]
    deta = np.cumsum(g[::-1])[::-1] * (1.0 - expit(eta))
    return float(nll), np.concatenate([grad_w, [dz.sum()], deta])
