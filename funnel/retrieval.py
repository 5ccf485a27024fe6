"""Stage 1: candidates from several sources, merged, deduplicated and filtered.

Sources: the two-tower ANN (``ann``), co-visitation of the user's recent items (``covisit``), popular
items of the user's favourite categories (``category``), segment popularity (``popular``), trending
(``trending``) and the newest items (``fresh``). Personal sources get a share of the budget that grows
with the user's interaction count, ``w = n / (n + halfway)`` (the category source, which needs only a
few events, ``n / (n + 1)``); the prior sources take the rest. There is no hard cold/warm switch.

Every source's score and rank of every candidate stay on the :class:`CandidateSet`: they are ranking
features (``funnel.features``) and the per-source ablations of ``streamrec eval``.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import operator
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from core.online import F32, ItemInfo, OnlineState, Scored, UserState
from core.protocols import Features, VectorIndex
from core.settings import RetrievalSettings
from funnel.modelset import ModelSet, UserTower

# Source precedence when an item comes from several: the first listed names it.
SOURCES = ("ann", "seq", "cf", "covisit", "category", "popular", "trending", "fresh")
PERSONAL = ("ann", "seq", "cf", "covisit", "category")
LEARNED_I2I = ("seq", "cf")  # the trained item-to-item relations (models.item_neighbours)
TOP_CATEGORIES = 3
SHARED_READ_MIN = 128
_ACTIVE = operator.attrgetter("active")
# Opt-in record of what ``_filter`` drops, for the console's feed inspector: None (one ContextVar read
# per feed) unless a caller opens :func:`why_filtered` around the feed in its own thread.
_WHY: ContextVar[dict[str, tuple[str, str]] | None] = ContextVar("why_filtered", default=None)


@contextlib.contextmanager
def why_filtered() -> Iterator[dict[str, tuple[str, str]]]:
    """Within the block (this thread or task), retrieval records each candidate it drops:
    item -> (reason, source), reason one of ``seen`` (the user already engaged with it), ``blocked``
    (a block rule), ``inactive`` (withdrawn from the catalogue), ``over budget`` (cut to
    ``retrieval.candidates`` by the round robin)."""
    record: dict[str, tuple[str, str]] = {}
    token = _WHY.set(record)
    try:
        yield record
    finally:
        _WHY.reset(token)


@dataclass(frozen=True)
class SourceList:
    """One source's members (unique, in the source's order), each with its normalised score (0..1)
    and its 0-based rank (a member listed twice keeps its best score and its first rank)."""

    ids: list[str]
    norms: npt.NDArray[np.float64]
    ranks: npt.NDArray[np.int64]

    @classmethod
    def of(cls, scored: Scored, by_rank: bool) -> SourceList:
        """Signals are score / best score (``by_rank``: 1 - rank / n, for timestamps)."""
        n = len(scored)
        ids, raw = zip(*scored, strict=True)
        scores = np.array(raw, np.float64)
        top = scores.max()
        norms = 1.0 - np.arange(n) / n if by_rank or top <= 0 else np.maximum(scores, 0.0) / top
        if len(set(ids)) == n:
            return cls(list(ids), norms, np.arange(n))
        return cls._merged(ids, norms)

    @classmethod
    def _merged(cls, ids: Sequence[str], norms: npt.NDArray[np.float64]) -> SourceList:
        best: dict[str, float] = {}
        first: dict[str, int] = {}
        for rank, (iid, norm) in enumerate(zip(ids, norms.tolist(), strict=True)):
            if norm > best.get(iid, -1.0):
                best[iid] = norm
            first.setdefault(iid, rank)
        return cls(list(first), np.array([best[i] for i in first]), np.array(list(first.values())))


@dataclass
class CandidateSet:
    """Candidates in a stable order, each with its first source, and per source the members with
    their normalised score and rank (``lists``, source-major)."""

    item_ids: list[str] = field(default_factory=list)
    source: dict[str, str] = field(default_factory=dict)
    lists: dict[str, SourceList] = field(default_factory=dict)
    infos: dict[str, ItemInfo] = field(default_factory=dict)
    personal_weight: float = 0.0
    raw: dict[str, Scored] = field(default_factory=dict)
    user_vector: F32 | None = None
    unit_vectors: F32 | None = None  # the candidates' unit content vectors, when features built them
    # the learned relations' user rows, computed once a request: their sources and the features'
    # scores of every candidate share them (``ItemRelations`` ``memo``)
    relation_rows: dict[Any, Any] = field(default_factory=dict)
    _signals: dict[str, dict[str, float]] | None = None

    def add(self, name: str, scored: Scored, by_rank: bool = False) -> None:
        self.raw[name] = scored
        if not scored:
            return
        members = SourceList.of(scored, by_rank)
        self.lists[name] = members
        source = self.source
        new = [iid for iid in members.ids if iid not in source]
        source.update(zip(new, itertools.repeat(name)))
        self.item_ids.extend(new)
        self._signals = None

    @property
    def signals(self) -> dict[str, dict[str, float]]:
        """Per source, member -> normalised score (built on first use: explanations only)."""
        if self._signals is None:
            self._signals = {name: dict(zip(lst.ids, lst.norms.tolist(), strict=True))
                             for name, lst in self.lists.items()}
        return self._signals

    def signals_of(self, item_id: str) -> dict[str, float]:
        return {src: col[item_id] for src, col in self.signals.items() if item_id in col}


def personal_weight(user: UserState, halfway: float) -> float:
    n = max(user.n_interactions, len(user.recent))
    return n / (n + halfway) if n > 0 else 0.0


def top_categories(user_row: Features, k: int = TOP_CATEGORIES) -> list[tuple[str, float]]:
    """The user's strongest category affinities (Feast ``user_category_affinity`` row)."""
    cats = user_row.get("affinity_categories") or []
    scores = user_row.get("affinity_scores") or []
    return [(c, float(s)) for c, s in zip(cats, scores, strict=False) if s and s > 0][:k]


def _quotas(cfg: RetrievalSettings, user: UserState, halfway: float) -> dict[str, int]:
    w = personal_weight(user, halfway)
    n = max(user.n_interactions, len(user.recent))
    personal = {"ann": round(cfg.ann * w), "seq": round(cfg.seq * w), "cf": round(cfg.cf * w),
                "covisit": round(cfg.covisit * w), "category": round(cfg.category * n / (n + 1.0))}
    spare = cfg.ann + cfg.covisit - personal["ann"] - personal["covisit"]
    popular = max(cfg.popular, cfg.candidates - cfg.fresh - sum(personal.values()))
    return {**personal, "popular": popular, "trending": cfg.popular // 2 + spare // 4, "fresh": cfg.fresh}


def _tower_matches_index(tower: UserTower, index: VectorIndex) -> bool:
    """A user tower only queries the index built from its own item tower: between a promotion and
    the rebuild that follows it, the pair can come from different models, whose spaces differ."""
    built_from = getattr(index, "model_version", "")
    return not built_from or built_from == tower.version


def user_query(models: ModelSet, state: OnlineState, user: UserState) -> F32 | None:
    """The two-tower user vector; without a tower, the mean content vector of the recent items."""
    index, tower = models.index, models.user_tower
    if index is None or len(index) == 0:
        return None
    query = None
    if tower is not None and _tower_matches_index(tower, index):
        query = tower.user_vector({"user_id": user.user_id, "recent_items": user.recent})
    if query is None:
        vecs = [it.vector for it in state.items(user.recent[:10]) if it is not None and it.vector is not None]
        if not vecs:
            return None
        query = np.mean(np.stack(vecs), axis=0)
    q = np.asarray(query, np.float32).reshape(-1)
    return q if q.shape[0] == getattr(index, "dim", q.shape[0]) else None  # content vs tower space


def ann_candidates(models: ModelSet, query: F32 | None, k: int) -> Scored:
    if models.index is None or query is None or k <= 0:
        return []
    ids, scores = models.index.search(query.reshape(1, -1), k)
    return [(i, float(s)) for i, s in zip(ids[0], scores[0], strict=False) if i]


def category_candidates(state: OnlineState, user_row: Features, k: int, now: float) -> Scored:
    """Popular items of the user's top categories, weighted by the affinity (share of the quota too)."""
    cats = top_categories(user_row)
    total = sum(s for _, s in cats)
    if k <= 0 or total <= 0:
        return []
    acc: dict[str, float] = {}
    for cat, affinity in cats:
        share = affinity / total
        rows = shared_top(functools.partial(state.popular, f"cat:{cat}", now=now), max(1, round(k * share)))
        top = rows[0][1] if rows and rows[0][1] > 0 else 1.0
        for item, score in rows:
            acc[item] = max(acc.get(item, 0.0), share * score / top)
    return sorted(acc.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


def shared_top(read: Callable[[int], Scored], k: int) -> Scored:
    """The top ``k`` of a list that is the same for every user (popular, trending, fresh), read at a
    size from a few fixed ones (a power of two, at least SHARED_READ_MIN) and cut: the stores cache
    such lists per size, and a size that follows each user's quota would miss every time. (Ties at
    the cut are broken by member, as in the rest of the list.)"""
    if k <= 0:
        return []
    return read(max(SHARED_READ_MIN, 1 << (k - 1).bit_length()))[:k]


@dataclass(frozen=True)
class Request:
    """Everything retrieval needs about one request."""

    user: UserState
    user_row: Features
    segment: str | None
    now: float
    blocked: frozenset[str] = frozenset()


def gather(state: OnlineState, models: ModelSet, req: Request, cfg: RetrievalSettings,
           halfway: float, sources: Sequence[str] = SOURCES) -> CandidateSet:
    """Runs the sources, merges in :data:`SOURCES` order, drops seen/blocked/inactive items."""
    q = _quotas(cfg, req.user, halfway)
    cands = CandidateSet(personal_weight=personal_weight(req.user, halfway))
    cands.user_vector = user_query(models, state, req.user) if "ann" in sources else None
    lists: dict[str, Any] = {
        "ann": lambda: ann_candidates(models, cands.user_vector, q["ann"]),
        "seq": lambda: _learned(models, req.user, "seq", q["seq"], cands.relation_rows),
        "cf": lambda: _learned(models, req.user, "cf", q["cf"], cands.relation_rows),
        "covisit": lambda: _covisit(state, req.user, q["covisit"]),
        "category": lambda: category_candidates(state, req.user_row, q["category"], req.now)}
    for name in PERSONAL:
        if name in sources:
            cands.add(name, lists[name]())
    unused = sum(q[s] for s in PERSONAL) - len(cands.item_ids)  # e.g. no index yet: popular fills in
    if "popular" in sources:
        k = q["popular"] + max(unused, 0)
        cands.add("popular", shared_top(lambda n: state.popular(req.segment, n, req.now), k))
    if "trending" in sources:
        cands.add("trending", shared_top(lambda n: state.trending(req.segment, n, req.now), q["trending"]))
    if "fresh" in sources:
        cands.add("fresh", shared_top(state.fresh, q["fresh"]), by_rank=True)
    return _filter(cands, state, req.user, req.blocked, cfg.candidates)


def _learned(models: ModelSet, user: UserState, relation: str, k: int, memo: dict[Any, Any]) -> Scored:
    if models.neighbours is None or k <= 0 or not user.recent:
        return []
    return models.neighbours.score(relation, user.recent, k, memo)


def _covisit(state: OnlineState, user: UserState, k: int) -> Scored:
    if k <= 0 or not user.recent:
        return []
    near = user.covisit if user.covisit is not None else state.covisit(user.recent[:10], k)
    return near[:k]


def _filter(cands: CandidateSet, state: OnlineState, user: UserState, blocked: frozenset[str],
            limit: int) -> CandidateSet:
    drop = user.seen | blocked if blocked else user.seen
    keep = [i for i in cands.item_ids if i not in drop]
    infos = cands.infos
    found = state.items(keep)
    try:
        every = all(map(_ACTIVE, found))  # the usual case: keep every one
    except AttributeError:  # an id with no catalogue record (None)
        every = False
    if every:
        infos.update(zip(keep, found, strict=True))  # type: ignore[arg-type]
        out = keep
    else:
        out = []
        for iid, info in zip(keep, found, strict=True):
            if info is None:
                info = ItemInfo(iid)
            elif not info.active:
                continue
            infos[iid] = info
            out.append(iid)
    kept = _round_robin(out, cands.source, limit) if len(out) > limit else out
    why = _WHY.get()
    if why is not None:
        _record(why, cands, drop, blocked, set(out), set(kept))
    cands.item_ids = kept
    return cands


def _record(why: dict[str, tuple[str, str]], cands: CandidateSet, drop: set[str] | frozenset[str],
            blocked: frozenset[str], listed: set[str], kept: set[str]) -> None:
    for iid in cands.item_ids:
        if iid in kept:
            continue
        reason = ("blocked" if iid in blocked else "seen") if iid in drop else \
            "inactive" if iid not in listed else "over budget"
        why[iid] = (reason, cands.source[iid])


def describe(cands: CandidateSet, item_ids: Sequence[str], state: OnlineState) -> None:
    """Make sure ``item_ids`` (e.g. the items a logged feed showed) have catalog infos on ``cands``."""
    missing = [i for i in item_ids if i not in cands.infos]
    for iid, info in zip(missing, state.items(missing), strict=True):
        cands.infos[iid] = info or ItemInfo(iid)


def _round_robin(item_ids: list[str], source: dict[str, str], limit: int) -> list[str]:
    """Truncate fairly: take from each source in turn (in :data:`SOURCES` order), so no source is
    starved by the budget."""
    by_src: dict[str, list[str]] = {}
    for src, group in itertools.groupby(item_ids, key=source.__getitem__):  # runs of one source
        members = by_src.get(src)
        if members is None:
            by_src[src] = list(group)
        else:
            members.extend(group)
    rounds = itertools.zip_longest(*(by_src[s] for s in SOURCES if s in by_src))
    taken = filter(functools.partial(operator.is_not, None), itertools.chain.from_iterable(rounds))
    return list(itertools.islice(taken, limit))
