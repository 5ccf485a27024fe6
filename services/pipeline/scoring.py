"""Stage 3: scores per objective, combined by ``settings.ranking.head_weights``.

With a ranker the heads come from the multi-task model. Without one (fresh install, nothing trained)
a heuristic stands in and the feed says ``model_version="none"``: a prior (segment popularity,
trending, declared interests) blended with personal signals (co-visitation, ANN similarity) by the
user's personal weight ``w``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from core.protocols import Features, Ranker
from services.pipeline.retrieval import CandidateSet
from services.pipeline.state import UserState

F32 = npt.NDArray[np.float32]


def declared_interests(user: UserState) -> set[str]:
    """Declared attribute values (strings, or comma-separated lists) that may name categories."""
    out: set[str] = set()
    for value in user.attributes.values():
        if isinstance(value, str):
            out.update(v.strip().lower() for v in value.split(",") if v.strip())
    return out


def _signal(cands: CandidateSet, source: str) -> F32:
    column = cands.signals.get(source)
    if not column:
        return np.zeros(len(cands.item_ids), np.float32)
    return np.array(list(map(column.get, cands.item_ids, itertools.repeat(0.0))), np.float32)


def heuristic_heads(cands: CandidateSet, user: UserState) -> dict[str, F32]:
    """{"prior", "personal", "click"}: click = (1-w) prior + w personal, in [0, ~1.2]."""
    prior = np.maximum.reduce([_signal(cands, "popular"), 0.8 * _signal(cands, "trending"),
                               0.3 * _signal(cands, "fresh")])
    interests = declared_interests(user)
    if interests:
        infos = cands.infos
        prior += np.fromiter((0.2 if interests & {c.lower() for c in infos[i].categories} else 0.0
                              for i in cands.item_ids), np.float32, len(cands.item_ids))
    personal = np.maximum(_signal(cands, "covisit"), _signal(cands, "ann"))
    w = cands.personal_weight
    click = (1.0 - w) * prior + w * (personal + 0.1 * prior)
    return {"prior": prior, "personal": personal, "click": click.astype(np.float32)}


def combine(heads: Mapping[str, F32], weights: Mapping[str, float], n: int) -> F32:
    """Weighted sum of the heads named in ``weights``; heads absent from the model count as 0."""
    total = np.zeros(n, np.float32)
    for name, w in weights.items():
        if name in heads:
            total += np.float32(w) * np.asarray(heads[name], np.float32)
    return total


def item_feature_rows(cands: CandidateSet, store_rows: Sequence[Features] | None) -> list[Features]:
    """Item features for the ranker: store features plus retrieval signals and catalog facts."""
    rows: list[Features] = []
    for j, iid in enumerate(cands.item_ids):
        info = cands.infos[iid]
        row: dict[str, Any] = dict(store_rows[j]) if store_rows is not None else {}
        row.setdefault("item_id", iid)
        row.setdefault("categories", info.categories)
        row.setdefault("created_at", info.created_at)
        row.update({f"signal_{k}": v for k, v in cands.signals_of(iid).items()})
        row["source"] = cands.source[iid]
        rows.append(row)
    return rows


def model_heads(ranker: Ranker, user: Features, items: Sequence[Features]) -> dict[str, F32]:
    return {k: np.asarray(v, np.float32) for k, v in ranker.score(user, items).items()}
