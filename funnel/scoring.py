"""Stage 3: scores per objective from the feature matrix, combined by ``ranking.head_weights``.

With a trained ranker the heads come from the multi-task model, fed the columns it names. Without one
(a fresh install) :class:`HeuristicRanker` scores the same feature matrix: a prior (segment
popularity, trending, freshness, declared interests) blended with personal signals (co-visitation,
ANN, favourite categories, category affinity) by the user's personal weight ``w``. Either way there is
one feature set and one ranking step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from core.online import F32
from core.protocols import FeatureRanker
from funnel.features import FEATURES, INDEX


def select(matrix: F32, names: Sequence[str]) -> F32:
    """The columns ``names`` of a :data:`FEATURES` matrix (NaN for a name this funnel lacks)."""
    out = np.full((len(matrix), len(names)), np.nan, np.float32)
    for j, name in enumerate(names):
        if name in INDEX:
            out[:, j] = matrix[:, INDEX[name]]
    return out


class HeuristicRanker:
    """Implements ``core.protocols.FeatureRanker`` with a fixed formula (no training needed)."""

    version = "none"
    feature_names: tuple[str, ...] = FEATURES

    def score_arrays(self, dense: F32) -> dict[str, F32]:
        def col(name: str) -> F32:
            return np.nan_to_num(dense[:, INDEX[name]]).astype(np.float32)

        prior = np.maximum.reduce([col("popular_score"), 0.8 * col("trending_score"),
                                   0.3 * col("fresh_score")])
        prior = prior + 0.2 * col("declared_interest")
        personal = np.maximum.reduce([col("covisit_score"), col("ann_score"), col("seq_score"),
                                      col("cf_score"), 0.8 * col("category_score")])
        affinity = 0.5 * col("affinity")
        w = col("personal_weight")
        click = (1.0 - w) * (prior + affinity) + w * (personal + affinity + 0.1 * prior)
        return {"prior": prior, "personal": personal, "click": click.astype(np.float32)}


HEURISTIC = HeuristicRanker()


def model_heads(ranker: FeatureRanker, matrix: F32) -> dict[str, F32]:
    heads = ranker.score_arrays(select(matrix, ranker.feature_names))
    return {k: np.asarray(v, np.float32) for k, v in heads.items() if k != "score"}


def combine(heads: Mapping[str, F32], weights: Mapping[str, float], n: int) -> F32:
    """Weighted sum of the heads named in ``weights``; heads absent from the model count as 0."""
    total = np.zeros(n, np.float32)
    for name, w in weights.items():
        if name in heads:
            total += np.float32(w) * np.asarray(heads[name], np.float32)
    return total
