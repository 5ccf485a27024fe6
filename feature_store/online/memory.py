"""In-process BanditStateStore for unit tests of serving code (same numbers as the Redis reader)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from core.protocols import FloatArray


class InMemoryBanditState:
    """Beta posteriors per (segment, item) from impression and attributed-click counts."""

    def __init__(self, prior_alpha: float = 1.0, prior_beta: float = 20.0) -> None:
        self.prior_alpha, self.prior_beta = prior_alpha, prior_beta
        self._imps: defaultdict[tuple[str, str], float] = defaultdict(float)
        self._clicks: defaultdict[tuple[str, str], float] = defaultdict(float)

    def record(self, segment: str, item_id: str, impressions: float = 0.0, clicks: float = 0.0) -> None:
        self._imps[(segment, item_id)] += impressions
        self._clicks[(segment, item_id)] += clicks

    def posteriors(self, segment: str, item_ids: Sequence[str]) -> tuple[FloatArray, FloatArray]:
        imps = np.array([self._imps.get((segment, i), 0.0) for i in item_ids])
        clicks = np.array([self._clicks.get((segment, i), 0.0) for i in item_ids])
        alpha = self.prior_alpha + clicks
        beta = self.prior_beta + np.maximum(imps - clicks, 0.0)
        return alpha.astype(np.float32), beta.astype(np.float32)
