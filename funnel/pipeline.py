"""The transport-free funnel: retrieve -> features -> rank -> re-rank -> explore, one call per feed.

The feed API and the publisher call it over Redis and Feast; the training job and ``streamrec eval``
call it over the in-process store they replay the event log into. The clock is injected (``now``):
event time in a replay, wall time live. The only randomness (Thompson sampling) is seeded from the
user id and the user's state, so the same state gives the same feed.

Example:
    >>> from core.settings import Settings
    >>> from feature_store.online.memory_state import MemoryOnline
    >>> Pipeline(Settings(), MemoryOnline(Settings())).feed("u1", n=2, now=1.7e9).feed.items
    []
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import time
import uuid
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Protocol

import numpy as np

from core.deletions import pseudonym
from core.errors import StoreUnavailable
from core.events import Feed, FeedItem
from core.online import F32, Clock, OnlineState, UserState
from core.protocols import FeatureReader
from core.settings import Settings
from funnel import features as feats
from funnel import reads, vectors
from funnel.explore import explore_slots, personal_prior, slot_positions
from funnel.fallback import FeedCache, Forgotten, PopularitySnapshot, degraded_feed
from funnel.modelset import ModelSet, ModelSlot
from funnel.retrieval import SOURCES, CandidateSet, Request, describe, gather
from funnel.scoring import HEURISTIC, combine, model_heads
from models.rerank import Candidates, rerank

log = logging.getLogger(__name__)
STAGES = ("retrieval", "features", "ranking", "reranking")


@dataclass
class FeedResult:
    feed: Feed
    stages_ms: dict[str, float] = field(default_factory=dict)
    candidates: int = 0
    # exploration position -> {pool item: probability that the policy shows it there}: what an
    # off-policy estimate needs of a stochastic policy (the feed carries only the picks' propensities)
    explore: dict[int, dict[str, float]] = field(default_factory=dict)
    feature_rows: tuple[int, int] = (0, 0)  # Feast rows read with any value, of all read (user + items)
    # what the ranker saw (eval scores each source and the ranker alone on it without a second read)
    inputs: RankInputs | None = field(default=None, repr=False, compare=False)


@dataclass
class RankInputs:
    """What the ranker sees for one request: the candidates and their feature matrix."""

    cands: CandidateSet
    item_ids: list[str]
    matrix: F32
    features_ok: bool = True


@dataclass
class _Request:
    user: UserState
    segment: str | None
    n: int
    now: float
    models: ModelSet
    rng: np.random.Generator
    stages_ms: dict[str, float] = field(default_factory=dict)
    degraded: bool = False


def _seed(user_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(user_id.encode(), digest_size=4).digest(), "little")


def _unique(items: Iterator[str]) -> Iterator[str]:
    seen: set[str] = set()
    for item in items:
        if item not in seen:
            seen.add(item)
            yield item


def _nonempty_rows(ur: reads.UserReads, inputs: RankInputs) -> tuple[int, int]:
    """(Feast rows with any value, rows read): the user's and the candidates' (an item row is empty
    exactly when its 24 h impressions are unknown, NaN in the matrix)."""
    user = any(v is not None for k, v in ur.row.items() if not k.endswith("_id"))
    column = inputs.matrix[:, feats.INDEX["item_impressions_24h"]]
    return int(user) + int(np.count_nonzero(~np.isnan(column))), 1 + len(column)


def explore_candidates(cands: CandidateSet) -> list[str]:
    """Every item an exploration pool can draw from (fresh, popular, trending candidates): their
    bandit counts are read with the candidates' features."""
    return [i for name in ("fresh", "popular", "trending") for i, _ in cands.raw.get(name, [])
            if i in cands.infos]


def _explore_pool(cands: CandidateSet, taken: set[str], limit: int) -> list[str]:
    """Fresh items (newest first) interleaved with popular/trending ones, none already in the feed."""
    fresh = [i for i, _ in cands.raw.get("fresh", []) if i in cands.infos and i not in taken]
    skip = taken | set(fresh)
    ranked = itertools.chain(cands.raw.get("popular", []), cands.raw.get("trending", []))
    other = list(itertools.islice(_unique(i for i, _ in ranked if i in cands.infos and i not in skip), limit))
    mixed = [i for pair in itertools.zip_longest(fresh, other) for i in pair if i is not None]
    return mixed[:limit]


class Router(Protocol):
    """Experiments (``funnel.experiments.Experiments``): the feed of the arm a user is in, or None."""

    def feed(self, pipeline: Pipeline, user_id: str, n: int, context: dict[str, str] | None, trigger: str,
             trigger_event_ts: float | None, salt: int, now: float) -> FeedResult | None: ...


class Pipeline:
    """One instance per process; thread-safe for concurrent requests."""

    def __init__(self, settings: Settings, state: OnlineState, models: ModelSlot | None = None,
                 reader: FeatureReader | None = None, clock: Clock = time.time) -> None:
        self.settings, self.state, self.reader, self.clock = settings, state, reader, clock
        self.models = models or ModelSlot()
        self.forgotten = Forgotten(partial(pseudonym, settings.tenancy.tenant, "user"))
        self.cache = FeedCache(forgotten=self.forgotten)
        self.snapshot = PopularitySnapshot(self.forgotten)
        self.sources: Sequence[str] = SOURCES
        self.experiments: Router | None = None

    def variant(self, settings: Settings, models: ModelSlot | None = None,
                sources: Sequence[str] | None = None) -> Pipeline:
        """A sibling with other settings, models or candidate sources (an experiment arm) over the
        same state, feature reader, clock and fallback caches."""
        other = Pipeline(settings, self.state, models or self.models, self.reader, self.clock)
        other.cache, other.snapshot, other.forgotten = self.cache, self.snapshot, self.forgotten
        other.sources = tuple(sources) if sources else self.sources
        return other

    def ready(self) -> bool:
        try:
            return bool(self.state.ping())
        except Exception:  # noqa: BLE001 - readiness is a yes/no answer
            return False

    def feed(self, user_id: str, n: int | None = None, context: dict[str, str] | None = None,
             trigger: str = "request", trigger_event_ts: float | None = None, salt: int = 0,
             now: float | None = None) -> FeedResult:
        """Always returns a valid feed; store or model failures give ``degraded=True``, never raise."""
        n = n or self.settings.publisher.feed_size
        now = self.clock() if now is None else now
        if self.experiments is not None:
            routed = self.experiments.feed(self, user_id, n, context, trigger, trigger_event_ts, salt, now)
            if routed is not None:
                return self._cleaned(routed)
        segment = (context or {}).get(self.settings.bandit.segment_key)
        try:
            result = self._compute(user_id, n, segment, salt, now)
        except StoreUnavailable as exc:
            log.warning("online store unavailable, serving fallback for %s: %s", user_id, exc)
            return FeedResult(degraded_feed(user_id, n, self.cache, self.snapshot, segment, "store", now))
        except Exception:
            log.exception("pipeline failed for %s, serving fallback", user_id)
            return FeedResult(degraded_feed(user_id, n, self.cache, self.snapshot, segment, "error", now))
        feed = result.feed.model_copy(update={"trigger": trigger, "trigger_event_ts": trigger_event_ts})
        if not feed.degraded:
            self.cache.put(feed)
        return self._cleaned(replace(result, feed=feed))

    def _cleaned(self, result: FeedResult) -> FeedResult:
        """The result without items deleted while it was computed (from caches filled before the
        deletion was heard of); its exploration record no longer matches the positions then."""
        feed = self.forgotten.clean(result.feed)
        return result if feed is result.feed else replace(result, feed=feed, explore={})

    def forget(self, items: Collection[str], users: Collection[str] = ()) -> None:
        """The eraser deleted ``items`` and ``users`` (by pseudonym, ``core.deletions.pseudonym``):
        from now on no answer of this process holds them. The state's caches read the items again (the
        eraser's inactive stubs), the last-feed cache and popularity snapshot drop them, and every feed
        is cleaned against them for ``Forgotten.keep_s``."""
        self.forgotten.add(items, users)
        evict = getattr(self.state, "forget_items", None)
        if items and callable(evict):
            evict(items)
        self.cache.purge(users)
        self.snapshot.purge()

    def rank_inputs(self, user_id: str, now: float, item_ids: Sequence[str] | None = None,
                    segment: str | None = None) -> RankInputs:
        """Candidates and features as a feed request at ``now`` would see them; with ``item_ids`` (a
        logged feed's items) the features of those items instead of the retrieved ones."""
        ur = reads.read_user(self.state, user_id, self.reader)
        return self._inputs(ur, segment or ur.user.segment, now, self.models.current, item_ids)

    def _inputs(self, ur: reads.UserReads, segment: str | None, now: float, models: ModelSet,
                item_ids: Sequence[str] | None = None, stages: dict[str, float] | None = None) -> RankInputs:
        t0 = time.perf_counter()
        req = Request(ur.user, ur.row, segment, now, self._blocked())
        cands = gather(self.state, models, req, self.settings.retrieval,
                       self.settings.retrieval.cold_start_halfway, self.sources)
        ids = list(cands.item_ids if item_ids is None else item_ids)
        if item_ids is not None:
            describe(cands, ids, self.state)
        t1 = time.perf_counter()
        pool = explore_candidates(cands) if self.settings.rerank.explore_slots else []
        ir = reads.read_items(self.state, ids, segment, now, self.reader, pool)
        inputs = feats.FeatureInputs(ur.user, ur.row, now, segment, cands)
        matrix = feats.build(inputs, ids, self.state, ir, models.index, models.neighbours)
        if stages is not None:
            stages["retrieval"] = stages.get("retrieval", 0.0) + (t1 - t0) * 1e3
            stages["features"] = (time.perf_counter() - t1) * 1e3
        return RankInputs(cands, ids, matrix, ur.row_ok and ir.rows_ok)

    def _compute(self, user_id: str, n: int, segment: str | None, salt: int, now: float) -> FeedResult:
        t0 = time.perf_counter()
        ur = reads.read_user(self.state, user_id, self.reader)
        user = ur.user
        segment = segment or user.segment
        rng = np.random.default_rng([self.settings.bandit.seed, _seed(user_id), user.n_interactions,
                                     len(user.recent), salt])
        req = _Request(user, segment, n, now, self.models.current, rng)
        req.stages_ms["retrieval"] = (time.perf_counter() - t0) * 1e3
        inputs = self._inputs(ur, segment, now, req.models, stages=req.stages_ms)
        self.snapshot.update(segment, inputs.cands.raw.get("popular", []))
        req.degraded = not inputs.features_ok and req.models.ranker is not None
        t1 = time.perf_counter()
        heads = self._rank(req, inputs)
        req.stages_ms["ranking"] = (time.perf_counter() - t1) * 1e3
        out = self._finish(req, inputs.cands, heads)
        out.feature_rows, out.inputs = _nonempty_rows(ur, inputs), inputs
        return out

    def _rank(self, req: _Request, inputs: RankInputs) -> dict[str, F32]:
        if not inputs.item_ids:
            return {}
        ranker = req.models.ranker if inputs.features_ok else None
        return model_heads(ranker or HEURISTIC, inputs.matrix)

    def _blocked(self) -> frozenset[str]:
        return frozenset(i for r in self.settings.rerank.rules if r.kind == "block" for i in r.item_ids)

    def _finish(self, req: _Request, cands: CandidateSet, heads: dict[str, F32]) -> FeedResult:
        t0 = time.perf_counter()
        ids = cands.item_ids
        total = combine(heads, self.settings.ranking.head_weights, len(ids))
        slots, feed_size = self.settings.rerank.explore_slots, self.settings.publisher.feed_size
        size = max(req.n, feed_size)  # re-rank and explore a whole feed, then cut: the head is n-independent
        positions = slot_positions(size, slots, feed_size)
        chosen, rules = self._rerank(cands, total, size, req.now)
        pos_of = dict(zip(ids, range(len(ids)), strict=True))
        # the pool leaves out the exploited items of a feed_size feed, whatever n asks for: a deeper
        # pool for a larger n would change the picks, and with them the feed's head
        head = set(chosen[: feed_size - len(positions)])
        explore, dist = self._explore(req, cands, head, len(positions), total, pos_of)
        picked = {iid for iid, _ in explore}
        exploit = [i for i in chosen if i not in picked][: size - len(explore)]
        ranked = Ranked(cands, heads, total, pos_of, rules)
        items = _items(ranked, exploit, explore, positions, size)[: req.n]
        req.stages_ms["reranking"] = (time.perf_counter() - t0) * 1e3
        models = req.models
        model_version = models.model_version if models.ranker is not None and not req.degraded else "none"
        feed = Feed(feed_id=uuid.uuid4().hex, user_id=req.user.user_id, version=int(req.now * 1000),
                    generated_at=req.now, model_version=model_version,
                    index_version=models.index_version, items=items, degraded=models.degraded or req.degraded)
        shown = {p: d for p, d in zip(positions, dist, strict=False) if p < req.n}  # fewer picks: fewer slots
        return FeedResult(feed, req.stages_ms, len(ids), shown)

    def _rerank(self, cands: CandidateSet, total: F32, k: int,
                now: float) -> tuple[list[str], dict[str, list[str]]]:
        if not cands.item_ids or k <= 0:
            return [], {}
        infos = [cands.infos[i] for i in cands.item_ids]
        unit = cands.unit_vectors if cands.unit_vectors is not None else vectors.diversity_vectors(infos)
        c = Candidates(cands.item_ids, total.astype(np.float32), unit,
                       [it.categories for it in infos], np.array([it.created_at for it in infos]),
                       [it.attributes for it in infos])
        out = rerank(c, k, self.settings.rerank, now=now)
        return [cands.item_ids[i] for i in out.order], {cands.item_ids[i]: r for i, r in out.rules.items()}

    def _explore(self, req: _Request, cands: CandidateSet, taken: set[str], slots: int, total: F32,
                 pos_of: dict[str, int]) -> tuple[list[tuple[str, float]], list[dict[str, float]]]:
        if slots <= 0:
            return [], []
        pool = _explore_pool(cands, taken, max(self.settings.retrieval.explore, slots))
        if not pool:
            return [], []
        counts = self.state.posteriors(req.segment, pool)
        b = self.settings.bandit
        alpha, beta = np.asarray(counts[0], np.float64), np.asarray(counts[1], np.float64)
        if b.score_prior > 0 and self.settings.rerank.explore_policy == "thompson":
            scores = np.array([total[pos_of[i]] if i in pos_of else np.nan for i in pool], np.float64)
            alpha, beta = personal_prior(alpha, beta, scores, b.prior_alpha, b.prior_beta, b.score_prior)
        picks, probs = explore_slots(self.settings.rerank.explore_policy, pool, alpha, beta, slots, req.rng)
        return picks, [dict(zip(pool, row.tolist(), strict=True)) for row in probs[: len(picks)]]


@dataclass
class Ranked:
    """The ranked candidates a feed's items are described from: heads, combined score, each id's
    position, the rules each hit."""

    cands: CandidateSet
    heads: dict[str, F32]
    total: F32
    pos_of: dict[str, int]
    rules: dict[str, list[str]]


def _items(ranked: Ranked, chosen: list[str], explore: list[tuple[str, float]], positions: list[int],
           n: int) -> list[FeedItem]:
    """The feed's items: the exploit picks in order with the explore picks at ``positions``, each with
    its head scores and retrieval signals (6 decimals)."""
    slots = dict(zip(positions, explore, strict=False))
    exploit = iter(chosen)
    picks: list[tuple[str, float, bool]] = []
    for rank in range(n):
        pick = slots.get(rank)
        iid, prop = pick if pick else (next(exploit, None), 1.0)
        if iid is not None:
            picks.append((iid, prop, pick is not None))
    rows = [ranked.pos_of.get(iid) for iid, _, _ in picks]  # an explore pick may be from outside
    known = [j for j in rows if j is not None]
    heads = {h: dict(zip(known, v[known].tolist(), strict=True)) for h, v in ranked.heads.items()}
    total = dict(zip(known, ranked.total[known].tolist(), strict=True))
    cands, out = ranked.cands, list[FeedItem]()
    for (iid, prop, explored), j in zip(picks, rows, strict=True):
        scores = {h: round(v[j], 6) for h, v in heads.items()} if j is not None else {}
        scores.update({f"retrieval_{k}": round(v, 6) for k, v in cands.signals_of(iid).items()})
        out.append(FeedItem.served(iid, len(out), round(total[j], 6) if j is not None else 0.0,
                                   "explore" if explored else cands.source[iid], explored, prop, scores,
                                   ranked.rules.get(iid, [])))
    return out
