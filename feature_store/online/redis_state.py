"""``core.online.OnlineState`` over the stream worker's Redis state (key layout: ``keys.Keys``).

Every call is bounded by ``redis.socket_timeout_s``; a failure raises ``StoreUnavailable`` and opens a
short circuit breaker so the next requests fail fast. Lists that are the same for every user
(popular, trending, fresh) are cached for ``retrieval.shared_cache_ttl_s`` of the request clock.
The answers come from ``views`` (shared with the in-process store).
"""

from __future__ import annotations

import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

import numpy as np
import redis
from redis.cluster import ClusterNode, RedisCluster

from core.errors import StoreUnavailable
from core.online import F32, ItemInfo, Scored, UserState
from core.settings import Settings
from feature_store.online import views
from feature_store.online.effects import POP, TREND
from feature_store.online.keys import SLICES, Keys, pop_slice
from feature_store.redis_url import parse

P = ParamSpec("P")
R = TypeVar("R")
BREAKER_S = 1.0


def redis_client(settings: Settings) -> redis.Redis:
    """Sync client with bounded timeouts: a dead Redis costs at most ``socket_timeout_s`` per call.
    A ``redis+cluster://`` URL gives a ``RedisCluster`` (same commands; pipelines span nodes)."""
    r = settings.redis
    ep = parse(r.url or "redis://127.0.0.1:6379/0")
    opts: dict[str, Any] = {"socket_timeout": r.socket_timeout_s,
                            "socket_connect_timeout": r.connect_timeout_s, "decode_responses": False}
    if ep.cluster:
        nodes = [ClusterNode(host, port) for host, port in ep.nodes]
        return RedisCluster(startup_nodes=nodes, username=ep.username, password=ep.password,  # type: ignore[return-value]
                            ssl=ep.tls, **opts)
    return redis.Redis.from_url(ep.single_url, health_check_interval=0, **opts)


def _guard(fn: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        self: RedisOnlineState = args[0]  # type: ignore[assignment]
        if time.monotonic() < self._down_until:
            raise StoreUnavailable("redis marked down (circuit breaker open)")
        try:
            return fn(*args, **kwargs)
        except (redis.RedisError, OSError) as exc:
            self._down_until = time.monotonic() + BREAKER_S
            raise StoreUnavailable(f"redis: {exc}") from exc
    return wrapper


def _pairs(rows: Sequence[tuple[Any, Any]]) -> views.Rows:
    return [(views.text(m), float(s)) for m, s in rows]


class RedisOnlineState:
    """Implements ``core.online.OnlineState`` over a sync ``redis.Redis`` (decode_responses=False)."""

    def __init__(self, client: redis.Redis, settings: Settings, cache_size: int = 20_000) -> None:
        self.r, self.settings = client, settings
        self.keys = Keys(settings.redis.key_prefix)
        self.pop_hl = settings.worker.popularity_half_life_s
        self.trend_hl = settings.worker.trending_half_life_s
        self._down_until = 0.0
        self._cache: OrderedDict[str, tuple[float, ItemInfo | None]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._lists: dict[tuple[Any, ...], tuple[float, Scored]] = {}
        self._counts: dict[str, dict[str, tuple[float, float, float]]] = {}

    def segment_key(self, segment: str | None) -> str:
        return views.segment_key(segment, self.settings.bandit.segment_key)

    @_guard
    def ping(self) -> bool:
        return bool(self.r.ping())

    @_guard
    def user(self, user_id: str) -> UserState:
        """History, seen set and user record (one slot: one round trip), then the co-visitation
        neighbours of the recent items (their own shards: a second round trip)."""
        k = self.settings.retrieval.covisit
        with self.r.pipeline(transaction=False) as p:
            p.lrange(self.keys.history(user_id), 0, -1)
            p.smembers(self.keys.seen(user_id))
            p.hgetall(self.keys.user(user_id))
            hist, seen, rec = p.execute()
        history = [views.text(h) for h in hist]
        recent = views.history_items(history, views.COVISIT_RECENT)
        neighbours = []
        if recent:
            per = min(k, views.COVISIT_PER_ITEM)
            with self.r.pipeline(transaction=False) as p:
                for item in recent:
                    p.zrevrange(self.keys.covisit(item), 0, per - 1, withscores=True)
                neighbours = [_pairs(rows) for rows in p.execute()]
        record = {views.text(a): views.text(b) for a, b in rec.items()}
        return views.user_state(user_id, history, neighbours, {views.text(x) for x in seen}, record, k)

    def _segmented(self, kind: str, half_life: float, segment: str | None, k: int, now: float) -> Scored:
        """Each epoch's top-k of every slice (an item lives in one slice), merged."""
        if k <= 0:
            return []
        seg = self.segment_key(segment)
        segs = [seg] if seg == "all" else [seg, "all"]
        epochs = views.epochs(now, half_life)
        with self.r.pipeline(transaction=False) as p:
            for s in segs:
                for e in epochs:
                    for part in range(SLICES):
                        p.zrevrange(self.keys.popularity(kind, e, s, part), 0, k - 1, withscores=True)
            res = iter(p.execute())
        lists = []
        for _ in segs:
            rows = [(e, [row for _ in range(SLICES) for row in _pairs(next(res))]) for e in epochs]
            lists.append(views.decayed_top(rows, now, half_life, k))
        return next((lst for lst in lists if lst), [])

    def _shared(self, key: tuple[Any, ...], now: float, load: Callable[[], Scored]) -> Scored:
        """Lists that are the same for every user, cached for shared_cache_ttl_s of request time."""
        hit = self._lists.get(key)
        if hit is not None and 0.0 <= now - hit[0] < self.settings.retrieval.shared_cache_ttl_s:
            return hit[1]
        value = load()
        self._lists[key] = (now, value)
        return value

    @_guard
    def popular(self, segment: str | None, k: int, now: float) -> Scored:
        return self._shared(("pop", segment, k), now,
                            lambda: self._segmented(POP, self.pop_hl, segment, k, now))

    @_guard
    def trending(self, segment: str | None, k: int, now: float) -> Scored:
        return self._shared(("trend", segment, k), now,
                            lambda: self._segmented(TREND, self.trend_hl, segment, k, now))

    @_guard
    def covisit(self, item_ids: Sequence[str], k: int) -> Scored:
        if not item_ids or k <= 0:
            return []
        with self.r.pipeline(transaction=False) as p:
            for iid in item_ids:
                p.zrevrange(self.keys.covisit(iid), 0, k - 1, withscores=True)
            res = p.execute()
        return views.sum_neighbours([_pairs(rows) for rows in res], k)

    @_guard
    def fresh(self, k: int) -> Scored:
        if k <= 0:
            return []
        return self._shared(("fresh", k), time.time(), lambda: _pairs(
            self.r.zrevrange(self.keys.fresh, 0, k - 1, withscores=True)))

    @_guard
    def items(self, item_ids: Sequence[str]) -> list[ItemInfo | None]:
        now = time.monotonic()
        ttl = self.settings.retrieval.item_cache_ttl_s
        with self._lock:
            cached = {i: self._cache.get(i) for i in item_ids}
        missing = [i for i, c in cached.items() if c is None or now - c[0] > ttl]
        fetched = self._fetch_items(missing) if missing else {}
        with self._lock:
            for iid, info in fetched.items():
                self._cache[iid] = (now, info)
                self._cache.move_to_end(iid)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return [fetched[i] if i in fetched else cached[i][1] for i in item_ids]  # type: ignore[index]

    def _fetch_items(self, ids: list[str]) -> dict[str, ItemInfo | None]:
        with self.r.pipeline(transaction=False) as p:
            for iid in ids:
                p.hmget(self.keys.item(iid), "categories", "attributes", "created_at", "active")
                p.get(self.keys.vector(iid))
            res = p.execute()
        out = {}
        for j, iid in enumerate(ids):
            cats, attrs, created, active = (None if f is None else views.text(f) for f in res[2 * j])
            out[iid] = views.item_info(iid, cats, attrs, created, active, res[2 * j + 1])
        return out

    @_guard
    def item_popularity(self, item_ids: Sequence[str], now: float) -> F32:
        if not item_ids:
            return np.zeros(0, np.float32)
        epochs = views.epochs(now, self.pop_hl)
        parts = _by_slice(item_ids)
        with self.r.pipeline(transaction=False) as p:
            for e in epochs:
                for part, ids in parts.items():
                    p.zmscore(self.keys.popularity(POP, e, "all", part), ids)
            res = iter(p.execute())
        rows = []
        for e in epochs:
            score = {i: v for ids in parts.values() for i, v in zip(ids, next(res), strict=True)}
            rows.append((e, [score[i] for i in item_ids]))
        return views.decayed_scores(rows, now, self.pop_hl, len(item_ids))

    @_guard
    def posteriors(self, segment: str | None, item_ids: Sequence[str]) -> tuple[F32, F32]:
        """Counts cached for shared_cache_ttl_s (wall clock: they only grow)."""
        seg, now = self.segment_key(segment), time.monotonic()
        ttl = self.settings.retrieval.shared_cache_ttl_s
        cache = self._counts.setdefault(seg, {})
        stale = [i for i in item_ids if i not in cache or now - cache[i][0] >= ttl]
        if stale:
            parts = _by_slice(stale)
            with self.r.pipeline(transaction=False) as p:
                for part, ids in parts.items():
                    p.hmget(self.keys.bandit(seg, part), [f for i in ids for f in (f"{i}:i", f"{i}:c")])
                res = p.execute()
            for ids, raw in zip(parts.values(), res, strict=True):
                vals = [float(v) if v is not None else 0.0 for v in raw]
                for j, iid in enumerate(ids):
                    cache[iid] = (now, vals[2 * j], vals[2 * j + 1])
        counts = [cache[i][1:] for i in item_ids]
        if len(cache) > self._cache_size:
            cache.clear()
        b = self.settings.bandit
        return views.posterior_arrays(counts, b.prior_alpha, b.prior_beta)


def _by_slice(item_ids: Sequence[str]) -> dict[int, list[str]]:
    parts: dict[int, list[str]] = {}
    for i in dict.fromkeys(item_ids):
        parts.setdefault(pop_slice(i), []).append(i)
    return parts
