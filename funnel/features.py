"""The ranker's one feature set: what the funnel can compute at request time, nothing else.

Serving computes it over the Redis state and Feast's online rows; the training job and ``streamrec
eval`` compute it with the very same function over the in-process store they replay the event log
into, at each label's time (point in time by construction). A test compares the two sides on the same
events.

Columns (:data:`FEATURES`), per candidate:
- each retrieval source's normalised score and log rank (a missing source: score 0, rank ``MISSING``);
- ``tt_score``: two-tower user . item (every candidate, not only the ANN ones; NaN without a model);
- ``seq_all_score``, ``cf_all_score``: each learned item-to-item relation's normalised score of every
  candidate, not only of the ones in its quota (0 where the user's row does not reach it; NaN without
  relations);
- ``content_sim``: cosine of the item's content vector with the mean of the user's recent items';
- item statistics: decayed popularity, 24 h impressions and CTR, 1 h clicks (Feast ``item_realtime``),
  age at request time, bandit posterior mean for the request's segment;
- user x item: the user's category affinity for the item (Feast ``user_category_affinity``), whether a
  declared interest names one of its categories;
- user: history length, interaction count, hours since the last event, the personal weight.
NaN means unknown: the ranker replaces it with the training mean.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.online import F32, ItemInfo, OnlineState, UserState
from core.protocols import Features, ItemRelations, ItemRelationScores, ItemVectorLookup, VectorIndex
from funnel.reads import ItemReads
from funnel.retrieval import CandidateSet

SOURCE_COLUMNS = ("ann", "seq", "cf", "covisit", "category", "popular", "trending", "fresh")
FEATURES: tuple[str, ...] = (
    *(f"{s}_score" for s in SOURCE_COLUMNS), *(f"{s}_rank" for s in SOURCE_COLUMNS),
    "tt_score", "seq_all_score", "cf_all_score", "content_sim",
    "item_pop", "item_impressions_24h", "item_ctr_24h", "item_clicks_1h",
    "item_age_days", "bandit_mean", "affinity", "declared_interest",
    "user_history_len", "user_interactions", "user_idle_hours", "personal_weight",
)
INDEX = {name: j for j, name in enumerate(FEATURES)}
MISSING_RANK = math.log1p(1000.0)
_LOG1P = np.array([math.log1p(r) for r in range(4096)])
CTR_PRIOR_IMPRESSIONS = 20.0
_STATS = operator.itemgetter("impressions_24h", "clicks_24h", "clicks_1h")
_CREATED, _VECTOR = operator.attrgetter("created_at"), operator.attrgetter("vector")
_CATEGORIES = operator.attrgetter("categories")
DAY, HOUR = 86400.0, 3600.0


@dataclass(frozen=True)
class FeatureInputs:
    """Per request: the user, Feast's user row, the clock, the segment and the candidates."""

    user: UserState
    user_row: Features
    now: float
    segment: str | None
    cands: CandidateSet


def declared_interests(user: UserState) -> set[str]:
    """Declared attribute values (strings, or comma-separated lists) that may name categories."""
    out: set[str] = set()
    for value in user.attributes.values():
        if isinstance(value, str):
            out.update(v.strip().lower() for v in value.split(",") if v.strip())
    return out


def build(inputs: FeatureInputs, item_ids: Sequence[str], state: OnlineState, item_reads: ItemReads,
          index: VectorIndex | None, relations: ItemRelations | None = None) -> F32:
    """The ``[len(item_ids), len(FEATURES)]`` matrix. ``item_reads``: the items' Feast rows,
    popularity and bandit posteriors (``funnel.reads``); ``relations``: the learned item-to-item
    relations (``models.item_neighbours``), None when there are none."""
    out = np.full((len(item_ids), len(FEATURES)), np.nan, np.float32)
    found = list(map(inputs.cands.infos.get, item_ids))
    # (``None in found`` would call ItemInfo.__eq__ per item)
    infos: list[ItemInfo] = found if all(map(operator.is_not, found, itertools.repeat(None))) else \
        [info or ItemInfo(i) for i, info in zip(item_ids, found, strict=True)]  # type: ignore[assignment]
    _sources(out, inputs.cands, item_ids)
    out[:, INDEX["tt_score"]] = _tt_scores(inputs.cands.user_vector, index, item_ids)
    _relation_scores(out, relations, inputs, item_ids)
    out[:, INDEX["content_sim"]] = _content_sim(inputs, item_ids, infos, state)
    out[:, INDEX["item_pop"]] = np.log1p(item_reads.popularity)
    _item_stats(out, item_reads.rows)
    created = np.fromiter(map(_CREATED, infos), np.float64, len(infos))
    created[created <= 0] = np.nan
    out[:, INDEX["item_age_days"]] = np.log1p(np.maximum(inputs.now - created, 0.0) / DAY)
    alpha, beta = item_reads.alpha, item_reads.beta
    out[:, INDEX["bandit_mean"]] = alpha / np.maximum(alpha + beta, 1e-9)
    _affinity(out, inputs, infos)
    _user_columns(out, inputs)
    return out


def _log1p_ranks(ranks: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """``math.log1p`` of each rank, from a table (numpy's log1p may differ in the last bit)."""
    if len(ranks) and ranks.max() >= len(_LOG1P):
        return np.array([math.log1p(r) for r in ranks.tolist()])
    return _LOG1P[ranks]


def _sources(out: F32, cands: CandidateSet, item_ids: Sequence[str]) -> None:
    """Each source's score and log rank, scattered into the rows of its members (one dict lookup
    per source member, not per source x candidate)."""
    row = dict(zip(item_ids, range(len(item_ids)), strict=True))
    if len(row) < len(item_ids):  # an id listed twice (a logged feed): fill every row by lookup
        _sources_by_row(out, cands, item_ids)
        return
    for src in SOURCE_COLUMNS:
        score, rank = INDEX[f"{src}_score"], INDEX[f"{src}_rank"]
        out[:, score] = 0.0
        out[:, rank] = MISSING_RANK
        members = cands.lists.get(src)
        if members is None:
            continue
        rows = np.fromiter(map(row.get, members.ids, itertools.repeat(-1)), np.int64, len(members.ids))
        ok = rows >= 0
        out[rows[ok], score] = members.norms[ok]
        out[rows[ok], rank] = _log1p_ranks(members.ranks[ok])


def _sources_by_row(out: F32, cands: CandidateSet, item_ids: Sequence[str]) -> None:
    signals = cands.signals
    for src in SOURCE_COLUMNS:
        members = cands.lists.get(src)
        ranks = dict(zip(members.ids, members.ranks.tolist(), strict=True)) if members else {}
        out[:, INDEX[f"{src}_score"]] = [signals.get(src, {}).get(i, 0.0) for i in item_ids]
        out[:, INDEX[f"{src}_rank"]] = [math.log1p(ranks[i]) if i in ranks else MISSING_RANK
                                        for i in item_ids]


def _tt_scores(user_vector: F32 | None, index: VectorIndex | None, item_ids: Sequence[str]) -> F32:
    if user_vector is None or not isinstance(index, ItemVectorLookup):
        return np.full(len(item_ids), np.nan, np.float32)
    vecs, found = index.vectors(item_ids)
    scores = (vecs @ user_vector.astype(np.float32)).astype(np.float32) if len(item_ids) else vecs[:, 0]
    return np.where(found, scores, np.nan).astype(np.float32)


def _relation_scores(out: F32, relations: ItemRelations | None, inputs: FeatureInputs,
                     item_ids: Sequence[str]) -> None:
    """``seq_all_score`` / ``cf_all_score``: NaN (unknown) without relations that score items. The
    user's rows come from the request's memo, where retrieval's ``seq`` and ``cf`` sources left them."""
    if not isinstance(relations, ItemRelationScores):
        return
    recent, memo = inputs.user.recent, inputs.cands.relation_rows
    for relation in ("seq", "cf"):
        col = INDEX[f"{relation}_all_score"]
        out[:, col] = relations.scores(relation, recent, item_ids, memo) if recent else 0.0


def _unit(x: F32) -> F32:
    # (float32 rows divide into float32 already: no second copy of the [n, dim] block)
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32, copy=False)


def _content_sim(inputs: FeatureInputs, item_ids: Sequence[str], infos: Sequence[ItemInfo],
                 state: OnlineState) -> F32:
    """Cosine with the user's profile (mean of the recent items' vectors). When every candidate has
    a vector of that size, their unit vectors stay on the candidate set for the diversity step."""
    user = inputs.user
    recent = [it.vector for it in state.items(user.recent[:10]) if it is not None and it.vector is not None]
    sims = np.full(len(infos), np.nan, np.float32)
    if not recent:
        return sims
    profile = _unit(np.mean(np.stack(recent), axis=0))
    dim = profile.shape[0]
    vecs = list(map(_VECTOR, infos))
    if all(map(operator.is_not, vecs, itertools.repeat(None))) and set(map(len, vecs)) <= {dim}:
        rows = list(range(len(vecs)))  # every candidate has a vector of the profile's size
    else:
        rows = [j for j, v in enumerate(vecs) if v is not None and len(v) == dim]
    if rows:
        # one flat copy, then a reshape: np.stack would make a view of each of the 500 vectors
        flat = np.concatenate(vecs if len(rows) == len(vecs) else [vecs[j] for j in rows])  # type: ignore[arg-type]
        unit = _unit(flat.reshape(len(rows), dim))
        sims[rows] = unit @ profile
        if len(rows) == len(infos) and list(item_ids) == inputs.cands.item_ids:
            inputs.cands.unit_vectors = unit
    return sims


def _item_stats(out: F32, rows: Sequence[Features]) -> None:
    """Feast's item_realtime counts (None = unknown = NaN)."""
    try:  # a row read from Feast has every field (None when unset): one C-level getter per row
        values = list(map(_STATS, rows))
    except KeyError:  # a row that could not be read ({})
        values = [(r.get("impressions_24h"), r.get("clicks_24h"), r.get("clicks_1h")) for r in rows]
    stats = np.array(values, np.float64).reshape(-1, 3)
    imps, clicks = stats[:, 0], stats[:, 1]
    out[:, INDEX["item_impressions_24h"]] = np.log1p(imps)
    out[:, INDEX["item_ctr_24h"]] = (clicks + 1.0) / (imps + CTR_PRIOR_IMPRESSIONS)
    out[:, INDEX["item_clicks_1h"]] = np.log1p(stats[:, 2])


def _affinity(out: F32, inputs: FeatureInputs, infos: Sequence[ItemInfo]) -> None:
    row = inputs.user_row
    scores = dict(zip(row.get("affinity_categories") or [], row.get("affinity_scores") or [], strict=False))
    top = max(scores.values(), default=0.0)
    out[:, INDEX["affinity"]] = _best_affinity(scores, top, infos) if top > 0 else 0.0
    interests = declared_interests(inputs.user)
    out[:, INDEX["declared_interest"]] = [float(bool(interests & {c.lower() for c in info.categories}))
                                          for info in infos] if interests else 0.0


def _best_affinity(scores: dict[str, float], top: float, infos: Sequence[ItemInfo]) -> list[float]:
    """Per item, its best category's affinity / the user's top one (memoised per category list)."""
    keys = list(map(tuple, map(_CATEGORIES, infos)))
    memo = {cats: max((scores.get(c, 0.0) for c in cats), default=0.0) / top for cats in set(keys)}
    return list(map(memo.__getitem__, keys))


def _user_columns(out: F32, inputs: FeatureInputs) -> None:
    row, user = inputs.user_row, inputs.user
    history = row.get("history_len")
    last = row.get("last_event_ts")
    out[:, INDEX["user_history_len"]] = math.log1p(history) if history is not None else np.nan
    out[:, INDEX["user_interactions"]] = math.log1p(user.n_interactions)
    out[:, INDEX["user_idle_hours"]] = math.log1p(max(inputs.now - last, 0.0) / HOUR) if last else np.nan
    out[:, INDEX["personal_weight"]] = inputs.cands.personal_weight
