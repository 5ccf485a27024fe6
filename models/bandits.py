"""Bandit policies, pure numpy: Beta-Thompson, LinTS and LinUCB (river's ``pull``/``update`` shape).

Hyperparameters in ``__init__``, learned state in private attributes, one ``seed`` for all randomness,
explicit ``snapshot()``/``restore()``. The stream worker accumulates the same sufficient statistics in
Redis (Beta counts per (segment, item); A = I + sum x x^T and b = sum r x per item); serving can either
build a policy from them (``from_counts`` / ``from_stats``) or call the vectorised samplers directly.

Example:
    >>> ts = BetaThompson(prior_alpha=1.0, prior_beta=1.0, seed=0)
    >>> ts.update("a", 1.0); ts.update("b", 0.0)
    >>> ts.pull(["a", "b"]) in {"a", "b"}
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def sample_beta(alpha: npt.ArrayLike, beta: npt.ArrayLike, rng: np.random.Generator) -> FloatArray:
    """One Thompson draw per arm from Beta(alpha, beta); shapes [n] -> [n]."""
    return rng.beta(np.asarray(alpha, np.float64), np.asarray(beta, np.float64))


class BetaThompson:
    """Bernoulli Thompson sampling with a Beta(prior_alpha, prior_beta) prior per arm."""

    def __init__(self, prior_alpha: float = 1.0, prior_beta: float = 1.0, seed: int | None = None) -> None:
        self.prior_alpha, self.prior_beta, self.seed = prior_alpha, prior_beta, seed
        self._rng = np.random.default_rng(seed)
        self._counts: dict[str, list[float]] = {}

    def posterior(self, arm: str) -> tuple[float, float]:
        s, f = self._counts.get(arm, [0.0, 0.0])
        return self.prior_alpha + s, self.prior_beta + f

    def pull(self, arm_ids: Sequence[str]) -> str:
        return arm_ids[int(np.argmax(self.sample(arm_ids)))]

    def sample(self, arm_ids: Sequence[str]) -> FloatArray:
        post = np.array([self.posterior(a) for a in arm_ids]).reshape(-1, 2)
        return sample_beta(post[:, 0], post[:, 1], self._rng)

    def update(self, arm: str, reward: float) -> None:
        """``reward`` in [0, 1]: adds ``reward`` successes and ``1 - reward`` failures."""
        c = self._counts.setdefault(arm, [0.0, 0.0])
        c[0] += reward
        c[1] += 1.0 - reward

    @classmethod
    def from_counts(cls, impressions: Mapping[str, float], clicks: Mapping[str, float],
                    prior_alpha: float = 1.0, prior_beta: float = 1.0,
                    seed: int | None = None) -> BetaThompson:
        pol = cls(prior_alpha, prior_beta, seed)
        for arm, n in impressions.items():
            c = clicks.get(arm, 0.0)
            pol._counts[arm] = [c, max(n - c, 0.0)]
        return pol

    def snapshot(self) -> dict[str, Any]:
        return {"counts": {a: list(c) for a, c in self._counts.items()},
                "rng": self._rng.bit_generator.state}

    def restore(self, state: Mapping[str, Any]) -> None:
        self._counts = {a: list(c) for a, c in state["counts"].items()}
        self._rng.bit_generator.state = state["rng"]


class _Linear:
    """Disjoint per-arm ridge regression state: A = I*reg + sum x x^T, b = sum r x."""

    def __init__(self, dim: int, alpha: float = 1.0, reg: float = 1.0, seed: int | None = None) -> None:
        self.dim, self.alpha, self.reg, self.seed = dim, alpha, reg, seed
        self._rng = np.random.default_rng(seed)
        self._a: dict[str, FloatArray] = {}
        self._b: dict[str, FloatArray] = {}

    def _stats(self, arm: str) -> tuple[FloatArray, FloatArray]:
        if arm not in self._a:
            self._a[arm] = np.eye(self.dim) * self.reg
            self._b[arm] = np.zeros(self.dim)
        return self._a[arm], self._b[arm]

    def update(self, arm: str, x: npt.ArrayLike, reward: float) -> None:
        a, b = self._stats(arm)
        xv = np.asarray(x, np.float64)
        a += np.outer(xv, xv)
        b += reward * xv

    def set_stats(self, arm: str, a: npt.ArrayLike, b: npt.ArrayLike) -> None:
        self._a[arm] = np.array(a, np.float64)
        self._b[arm] = np.array(b, np.float64)

    def scores(self, arm_ids: Sequence[str], x: npt.ArrayLike) -> FloatArray:
        xv = np.asarray(x, np.float64)
        return np.array([self._score(arm, xv) for arm in arm_ids])

    def _score(self, arm: str, x: FloatArray) -> float:
        raise NotImplementedError

    def pull(self, arm_ids: Sequence[str], x: npt.ArrayLike) -> str:
        return arm_ids[int(np.argmax(self.scores(arm_ids, x)))]

    def snapshot(self) -> dict[str, Any]:
        return {"a": {k: v.tolist() for k, v in self._a.items()},
                "b": {k: v.tolist() for k, v in self._b.items()}, "rng": self._rng.bit_generator.state}

    def restore(self, state: Mapping[str, Any]) -> None:
        self._a = {k: np.array(v) for k, v in state["a"].items()}
        self._b = {k: np.array(v) for k, v in state["b"].items()}
        self._rng.bit_generator.state = state["rng"]


class LinUCB(_Linear):
    """Score = theta.x + alpha * sqrt(x^T A^-1 x), theta = A^-1 b."""

    def _score(self, arm: str, x: FloatArray) -> float:
        a, b = self._stats(arm)
        inv = np.linalg.inv(a)
        return float(inv @ b @ x + self.alpha * np.sqrt(x @ inv @ x))


class LinTS(_Linear):
    """Thompson sampling: theta ~ N(A^-1 b, alpha^2 A^-1), score = theta.x."""

    def _score(self, arm: str, x: FloatArray) -> float:
        a, b = self._stats(arm)
        inv = np.linalg.inv(a)
        theta = self._rng.multivariate_normal(inv @ b, self.alpha**2 * inv)
        return float(theta @ x)
