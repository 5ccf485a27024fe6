"""``GET /v1/items/{id}/similar``: ANN neighbours of the item's vector, else co-visitation, else the
popular items of its categories."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

from core.errors import StoreUnavailable
from funnel.pipeline import Pipeline


class SimilarItem(BaseModel):
    item_id: str
    score: float
    source: str


class SimilarResponse(BaseModel):
    item_id: str
    items: list[SimilarItem]
    degraded: bool = False


def _ann(pipeline: Pipeline, item_id: str, n: int) -> list[SimilarItem]:
    index = pipeline.models.current.index
    info = pipeline.state.items([item_id])[0]
    if index is None or info is None or info.vector is None:
        return []
    ids, scores = index.search(np.asarray(info.vector, np.float32).reshape(1, -1), n + 1)
    return [SimilarItem(item_id=i, score=float(s), source="ann")
            for i, s in zip(ids[0], scores[0], strict=False) if i and i != item_id][:n]


def _covisit(pipeline: Pipeline, item_id: str, n: int) -> list[SimilarItem]:
    return [SimilarItem(item_id=i, score=s, source="covisit")
            for i, s in pipeline.state.covisit([item_id], n + 1) if i != item_id][:n]


def _same_category(pipeline: Pipeline, item_id: str, n: int) -> list[SimilarItem]:
    """The popular items of the item's own categories (the worker keeps a popularity list per
    category; a category without one reads as everyone's, hence the category check)."""
    info = pipeline.state.items([item_id])[0]
    cats = set(info.categories) if info else set()
    now, best = pipeline.clock(), dict[str, float]()
    for cat in sorted(cats):
        for i, s in pipeline.state.popular(f"cat:{cat}", 2 * n + 1, now):
            best[i] = max(best.get(i, 0.0), s)
    pop = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))
    infos = pipeline.state.items([i for i, _ in pop])
    return [SimilarItem(item_id=i, score=s, source="category")
            for (i, s), it in zip(pop, infos, strict=True)
            if i != item_id and it is not None and cats & set(it.categories)][:n]


def similar_items(pipeline: Pipeline, item_id: str, n: int) -> SimilarResponse:
    try:
        for source in (_ann, _covisit, _same_category):
            items = source(pipeline, item_id, n)
            if items:
                return SimilarResponse(item_id=item_id, items=items)
    except StoreUnavailable:
        return SimilarResponse(item_id=item_id, items=[], degraded=True)
    return SimilarResponse(item_id=item_id, items=[])
