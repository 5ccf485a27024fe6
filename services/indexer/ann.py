"""Recall of an ANN index against exact inner-product search (the publish gate of the indexer)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from core.protocols import VectorIndex

F32 = npt.NDArray[np.float32]


def exact_recall(index: VectorIndex, item_ids: Sequence[str], vectors: F32, queries: F32, k: int) -> float:
    """Mean overlap of the index's top-k with brute-force top-k over ``vectors`` (aligned with ids)."""
    k = min(k, len(item_ids))
    if k == 0 or len(queries) == 0:
        return 1.0
    exact = np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :k]
    got, _ = index.search(queries, k)
    truth = [{item_ids[j] for j in row} for row in exact]
    return float(np.mean([len(set(g) & t) / k for g, t in zip(got, truth, strict=True)]))
