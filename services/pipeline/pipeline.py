"""The transport-free funnel: retrieve -> features -> rank -> re-rank -> explore, one call per feed.

Used by the feed API and the publisher alike, so both serve the same feed for the same state: the
only randomness (Thompson sampling) is seeded from the user id and the user's state.

Example:
    >>> from core.settings import Settings
    >>> from services.pipeline.state import InMemoryState
    >>> st = InMemoryState(popularity={"all": {"a": 3.0, "b": 2.0, "c": 1.0}})
    >>> Pipeline(Settings(), st).feed("u1", n=2).feed.items[0].item_id
    'a'
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from core.errors import StoreUnavailable
from core.events import Feed, FeedItem
from core.protocols import FeatureReader
from core.settings import Settings
from models.rerank import Candidates, rerank
from services.pipeline import vectors
from services.pipeline.explore import slot_positions, thompson_slots
from services.pipeline.fallback import FeedCache, PopularitySnapshot, degraded_feed
from services.pipeline.modelset import ModelSet, ModelSlot
from services.pipeline.retrieval import CandidateSet, gather
from services.pipeline.scoring import combine, heuristic_heads, item_feature_rows, model_heads
from services.pipeline.state import OnlineState, UserState

log = logging.getLogger(__name__)
STAGES = ("retrieval", "features", "ranking", "reranking")


@dataclass
class FeedResult:
    feed: Feed
    stages_ms: dict[str, float] = field(default_factory=dict)
    candidates: int = 0


@dataclass
class _Request:
    user: UserState
    segment: str | None
    n: int
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


def _explore_pool(cands: CandidateSet, taken: set[str], limit: int) -> list[str]:
    """Fresh items (newest first) interleaved with popular/trending ones, none already in the feed."""
    fresh = [i for i, _ in cands.raw.get("fresh", []) if i in cands.infos and i not in taken]
    skip = taken | set(fresh)
    ranked = itertools.chain(cands.raw.get("popular", []), cands.raw.get("trending", []))
    other = list(itertools.islice(_unique(i for i, _ in ranked if i in cands.infos and i not in skip), limit))
    mixed = [i for pair in itertools.zip_longest(fresh, other) for i in pair if i is not None]
    return mixed[:limit]


class Pipeline:
    """One instance per process; thread-safe for concurrent requests."""

    def __init__(self, settings: Settings, state: OnlineState, models: ModelSlot | None = None,
                 reader: FeatureReader | None = None) -> None:
        self.settings, self.state, self.reader = settings, state, reader
        self.models = models or ModelSlot()
        self.cache = FeedCache()
        self.snapshot = PopularitySnapshot()

    def ready(self) -> bool:
        try:
            return bool(self.state.ping())
        except Exception:  # noqa: BLE001 - readiness is a yes/no answer
            return False

    def feed(self, user_id: str, n: int | None = None, context: dict[str, str] | None = None,
             trigger: str = "request", trigger_event_ts: float | None = None, salt: int = 0) -> FeedResult:
        """Always returns a valid feed; store or model failures give ``degraded=True``, never raise."""
        n = n or self.settings.publisher.feed_size
        segment = (context or {}).get(self.settings.bandit.segment_key)
        try:
            result = self._compute(user_id, n, segment, salt)
        except StoreUnavailable as exc:
            log.warning("online store unavailable, serving fallback for %s: %s", user_id, exc)
            return FeedResult(degraded_feed(user_id, n, self.cache, self.snapshot, segment, "store"))
        except Exception:
            log.exception("pipeline failed for %s, serving fallback", user_id)
            return FeedResult(degraded_feed(user_id, n, self.cache, self.snapshot, segment, "error"))
        feed = result.feed.model_copy(update={"trigger": trigger, "trigger_event_ts": trigger_event_ts})
        if not feed.degraded:
            self.cache.put(feed)
        return FeedResult(feed, result.stages_ms, result.candidates)

    def _compute(self, user_id: str, n: int, segment: str | None, salt: int) -> FeedResult:
        t0 = time.perf_counter()
        user = self.state.user(user_id)
        segment = segment or user.segment
        rng = np.random.default_rng([self.settings.bandit.seed, _seed(user_id), user.n_interactions,
                                     len(user.recent), salt])
        req = _Request(user, segment, n, self.models.current, rng)
        cands = gather(self.state, req.models, user, segment, self.settings.retrieval,
                       self.settings.retrieval.cold_start_halfway, self._blocked())
        self.snapshot.update(segment, cands.raw.get("popular", []))
        req.stages_ms["retrieval"] = (time.perf_counter() - t0) * 1e3
        heads = self._rank(req, cands)
        return self._finish(req, cands, heads)

    def _blocked(self) -> set[str]:
        return {i for r in self.settings.rerank.rules if r.kind == "block" for i in r.item_ids}

    def _rank(self, req: _Request, cands: CandidateSet) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        ranker = req.models.ranker
        if ranker is None or self.reader is None or not cands.item_ids:
            req.stages_ms["features"] = 0.0
            heads = heuristic_heads(cands, req.user)
            req.stages_ms["ranking"] = (time.perf_counter() - t0) * 1e3
            return heads
        try:
            user_f = dict(self.reader.user_features(req.user.user_id))
            items_f = item_feature_rows(cands, self.reader.item_features(cands.item_ids))
        except StoreUnavailable as exc:
            log.warning("features unavailable, heuristic ranking: %s", exc)
            req.degraded = True
            return heuristic_heads(cands, req.user)
        user_f.update(user_id=req.user.user_id, n_interactions=req.user.n_interactions)
        if req.segment:
            user_f["segment"] = req.segment
        t1 = time.perf_counter()
        req.stages_ms["features"] = (t1 - t0) * 1e3
        heads = model_heads(ranker, user_f, items_f)
        req.stages_ms["ranking"] = (time.perf_counter() - t1) * 1e3
        return heads

    def _finish(self, req: _Request, cands: CandidateSet, heads: dict[str, np.ndarray]) -> FeedResult:
        t0 = time.perf_counter()
        ids = cands.item_ids
        weights = self.settings.ranking.head_weights
        total = combine(heads, weights, len(ids)) if ids else np.zeros(0, np.float32)
        positions = slot_positions(req.n, self.settings.rerank.explore_slots)
        chosen, rules = self._rerank(cands, total, req.n)
        explore = self._explore(req, cands, set(chosen[: req.n - len(positions)]), len(positions))
        picked = {iid for iid, _ in explore}
        exploit = [i for i in chosen if i not in picked][: req.n - len(explore)]
        items = self._items(cands, heads, total, exploit, rules, explore, positions, req.n)
        req.stages_ms["reranking"] = (time.perf_counter() - t0) * 1e3
        models = req.models
        feed = Feed(feed_id=uuid.uuid4().hex, user_id=req.user.user_id, version=int(time.time() * 1000),
                    generated_at=time.time(), model_version=models.model_version,
                    index_version=models.index_version, items=items, degraded=models.degraded or req.degraded)
        return FeedResult(feed, req.stages_ms, len(ids))

    def _rerank(self, cands: CandidateSet, total: np.ndarray,
                k: int) -> tuple[list[str], dict[str, list[str]]]:
        if not cands.item_ids or k <= 0:
            return [], {}
        infos = [cands.infos[i] for i in cands.item_ids]
        c = Candidates(cands.item_ids, total.astype(np.float32), vectors.diversity_vectors(infos),
                       [it.categories for it in infos], np.array([it.created_at for it in infos]),
                       [it.attributes for it in infos])
        out = rerank(c, k, self.settings.rerank, now=time.time())
        return [cands.item_ids[i] for i in out.order], {cands.item_ids[i]: r for i, r in out.rules.items()}

    def _explore(self, req: _Request, cands: CandidateSet, taken: set[str],
                 slots: int) -> list[tuple[str, float]]:
        if slots <= 0:
            return []
        pool = _explore_pool(cands, taken, max(self.settings.retrieval.explore, slots))
        if not pool:
            return []
        alpha, beta = self.state.posteriors(req.segment, pool)
        return thompson_slots(pool, alpha, beta, slots, req.rng)

    def _items(self, cands: CandidateSet, heads: dict[str, np.ndarray], total: np.ndarray, chosen: list[str],
               rules: dict[str, list[str]], explore: list[tuple[str, float]], positions: list[int],
               n: int) -> list[FeedItem]:
        pos_of = {iid: j for j, iid in enumerate(cands.item_ids)}
        slots = dict(zip(positions, explore, strict=False))
        exploit = iter(chosen)
        out: list[FeedItem] = []
        for rank in range(n):
            pick = slots.get(rank)
            iid, prop = pick if pick else (next(exploit, None), 1.0)
            if iid is None:
                continue
            j = pos_of[iid]
            scores = {h: round(float(v[j]), 6) for h, v in heads.items()}
            scores.update({f"retrieval_{k}": round(v, 6) for k, v in cands.signals_of(iid).items()})
            # model_construct: every field is built right here from typed values (no re-validation)
            out.append(FeedItem.model_construct(
                item_id=iid, rank=len(out), score=round(float(total[j]), 6),
                source="explore" if pick else cands.source[iid], explore=pick is not None,
                propensity=prop, scores=scores, rules=rules.get(iid, [])))
        return out
