"""Stage 1: candidates from several sources, merged, deduplicated and filtered.

Personalised sources (two-tower ANN, co-visitation) get a share of the candidate budget that grows
with the user's interaction count, ``w = n / (n + halfway)``; the prior sources (segment popularity,
trending, fresh) take the rest. There is no hard switch between cold and warm users.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.protocols import VectorIndex
from core.settings import RetrievalSettings
from services.pipeline.modelset import ModelSet, UserTower
from services.pipeline.state import ItemInfo, OnlineState, Scored, UserState

# Source precedence when an item comes from several: the first listed names it.
SOURCES = ("ann", "covisit", "popular", "trending", "fresh")
PERSONAL = ("ann", "covisit")


@dataclass
class CandidateSet:
    """Candidates in a stable order, each with its first source and per-source signals (0..1).

    ``signals`` is source-major (``signals[source][item_id]``) so scoring reads whole columns."""

    item_ids: list[str] = field(default_factory=list)
    source: dict[str, str] = field(default_factory=dict)
    signals: dict[str, dict[str, float]] = field(default_factory=dict)
    infos: dict[str, ItemInfo] = field(default_factory=dict)
    personal_weight: float = 0.0
    raw: dict[str, Scored] = field(default_factory=dict)

    def add(self, name: str, scored: Scored, by_rank: bool = False) -> None:
        """Signals are score / best score (``by_rank``: 1 - rank / n, for timestamps)."""
        self.raw[name] = scored
        if not scored:
            return
        top = max(s for _, s in scored)
        n = len(scored)
        if by_rank or top <= 0:
            norms = [1.0 - r / n for r in range(n)]
        else:
            norms = [max(s, 0.0) / top for _, s in scored]
        column = self.signals.setdefault(name, {})
        source, ids = self.source, self.item_ids
        for (iid, _), norm in zip(scored, norms, strict=True):
            if iid not in source:
                source[iid] = name
                ids.append(iid)
            if norm > column.get(iid, -1.0):
                column[iid] = norm

    def signals_of(self, item_id: str) -> dict[str, float]:
        return {src: col[item_id] for src, col in self.signals.items() if item_id in col}


def personal_weight(user: UserState, halfway: float) -> float:
    n = max(user.n_interactions, len(user.recent))
    return n / (n + halfway) if n > 0 else 0.0


def _quotas(cfg: RetrievalSettings, w: float) -> dict[str, int]:
    personal = {"ann": round(cfg.ann * w), "covisit": round(cfg.covisit * w)}
    spare = cfg.ann + cfg.covisit - sum(personal.values())
    popular = max(cfg.popular, cfg.candidates - cfg.fresh - sum(personal.values()))
    return {**personal, "popular": popular, "trending": cfg.popular // 2 + spare // 4, "fresh": cfg.fresh}


def _tower_matches_index(tower: UserTower, index: VectorIndex) -> bool:
    """A user tower only queries the index built from its own item tower: between a promotion and
    the rebuild that follows it, the pair can come from different models, whose spaces differ."""
    built_from = getattr(index, "model_version", "")
    return not built_from or built_from == tower.version


def ann_candidates(models: ModelSet, state: OnlineState, user: UserState, k: int) -> Scored:
    """Two-tower ANN; without a user tower the query is the mean vector of the user's recent items."""
    index = models.index
    if index is None or k <= 0 or len(index) == 0:
        return []
    query = None
    tower = models.user_tower
    if tower is not None and _tower_matches_index(tower, index):
        query = tower.user_vector({"user_id": user.user_id, "recent_items": user.recent})
    if query is None:
        vecs = [it.vector for it in state.items(user.recent[:10]) if it is not None and it.vector is not None]
        if not vecs:
            return []
        query = np.mean(np.stack(vecs), axis=0)
    q = np.asarray(query, np.float32).reshape(1, -1)
    dim = getattr(index, "dim", q.shape[1])
    if q.shape[1] != dim:  # e.g. content vectors against a two-tower index: not comparable
        return []
    ids, scores = index.search(q, k)
    return [(i, float(s)) for i, s in zip(ids[0], scores[0], strict=False) if i]


def gather(state: OnlineState, models: ModelSet, user: UserState, segment: str | None,
           cfg: RetrievalSettings, halfway: float, blocked: set[str]) -> CandidateSet:
    """Runs every source, merges in :data:`SOURCES` order, drops seen/blocked/inactive items."""
    w = personal_weight(user, halfway)
    q = _quotas(cfg, w)
    cands = CandidateSet(personal_weight=w)
    cands.add("ann", ann_candidates(models, state, user, q["ann"]))
    if q["covisit"] and user.recent:
        near = user.covisit if user.covisit is not None else state.covisit(user.recent[:10], q["covisit"])
        cands.add("covisit", near[: q["covisit"]])
    unused = q["ann"] + q["covisit"] - len(cands.item_ids)  # e.g. no index yet: popular fills in
    cands.add("popular", state.popular(segment, q["popular"] + max(unused, 0)))
    cands.add("trending", state.trending(segment, q["trending"]))
    cands.add("fresh", state.fresh(q["fresh"]), by_rank=True)
    return _filter(cands, state, user, blocked, cfg.candidates)


def _filter(cands: CandidateSet, state: OnlineState, user: UserState, blocked: set[str],
            limit: int) -> CandidateSet:
    keep = [i for i in cands.item_ids if i not in user.seen and i not in blocked]
    infos = state.items(keep)
    out: list[str] = []
    for iid, info in zip(keep, infos, strict=True):
        if info is not None and not info.active:
            continue
        cands.infos[iid] = info or ItemInfo(iid)
        out.append(iid)
    cands.item_ids = _round_robin(out, cands.source, limit) if len(out) > limit else out
    return cands


def _round_robin(item_ids: list[str], source: dict[str, str], limit: int) -> list[str]:
    """Truncate fairly: take from each source in turn, so no source is starved by the budget."""
    by_src: dict[str, list[str]] = {}
    for iid in item_ids:
        by_src.setdefault(source[iid], []).append(iid)
    queues = [by_src[s][::-1] for s in SOURCES if s in by_src]
    out: list[str] = []
    while len(out) < limit and queues:
        for q in list(queues):
            if q:
                out.append(q.pop())
            else:
                queues.remove(q)
            if len(out) >= limit:
                break
    return out
