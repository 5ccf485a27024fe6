"""Read-only view of the stream worker's Redis state (key layout: ``feature_store.online.keys``).

SERVING's own small read helper over the keys the worker writes: history, seen set, user record,
decayed popularity/trending per segment, co-visitation, fresh pool, catalog, content vectors and
Beta bandit counts. Every call is bounded by ``redis.socket_timeout_s``; a failure raises
``StoreUnavailable`` and opens a short circuit breaker so the next requests fail fast.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

import numpy as np
import redis

from core.errors import StoreUnavailable
from core.settings import Settings
from feature_store.online import decay
from feature_store.online.effects import decode_history
from feature_store.online.keys import Keys
from services.pipeline.state import F32, ItemInfo, Scored, UserState

P = ParamSpec("P")
COVISIT_RECENT = 10
COVISIT_PER_ITEM = 50
_USER_LUA = """
local hist = redis.call('LRANGE', KEYS[1], 0, -1)
local out = {}
for i = 1, math.min(tonumber(ARGV[2]), #hist) do
  local item = string.match(hist[i], '^(.*)\t[^\t]*$') or hist[i]
  out[i] = redis.call('ZREVRANGE', ARGV[1] .. item, 0, tonumber(ARGV[3]) - 1, 'WITHSCORES')
end
return {hist, out}
"""
R = TypeVar("R")
BREAKER_S = 1.0


def _guard(fn: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        self: RedisState = args[0]  # type: ignore[assignment]
        if time.monotonic() < self._down_until:
            raise StoreUnavailable("redis marked down (circuit breaker open)")
        try:
            return fn(*args, **kwargs)
        except (redis.RedisError, OSError) as exc:
            self._down_until = time.monotonic() + BREAKER_S
            raise StoreUnavailable(f"redis: {exc}") from exc
    return wrapper


def _s(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class RedisState:
    """Implements ``services.pipeline.state.OnlineState`` over a sync ``redis.Redis``."""

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
        if not segment or segment == "all":
            return "all"
        return segment if ":" in segment else f"{self.settings.bandit.segment_key}:{segment}"

    @_guard
    def ping(self) -> bool:
        return bool(self.r.ping())

    @_guard
    def user(self, user_id: str) -> UserState:
        """History, seen set, user record AND the co-visitation neighbours of the recent items, in
        one round trip (the neighbours are read server-side by a small Lua script)."""
        cfg = self.settings.retrieval
        with self.r.pipeline(transaction=False) as p:
            p.eval(_USER_LUA, 1, self.keys.history(user_id), self.keys.covisit(""), COVISIT_RECENT,
                   min(cfg.covisit, COVISIT_PER_ITEM))
            p.smembers(self.keys.seen(user_id))
            p.hgetall(self.keys.user(user_id))
            (hist, neighbours), seen, rec = p.execute()
        recent = [item for item, _ in decode_history([_s(h) for h in hist])]
        rec = {_s(k): _s(v) for k, v in rec.items()}
        attrs = json.loads(rec.get("attributes") or "{}")
        user = UserState(user_id, recent, {_s(x) for x in seen}, max(len(seen), len(recent)),
                         rec.get("segment") or None, attrs)
        user.covisit = _sum_neighbours(neighbours, cfg.covisit)
        return user

    def _decayed_top(self, kind: str, half_life: float, segments: list[str], k: int) -> list[Scored]:
        now = time.time()
        epochs = [decay.epoch_of(now, half_life) - d for d in (0, 1)]
        with self.r.pipeline(transaction=False) as p:
            for seg in segments:
                for e in epochs:
                    p.zrevrange(self.keys.popularity(kind, e, seg), 0, k - 1, withscores=True)
            res = p.execute()
        out: list[Scored] = []
        for j in range(len(segments)):
            acc: dict[str, float] = {}
            for e, rows in zip(epochs, res[2 * j: 2 * j + 2], strict=True):
                w = decay.epoch_weight(e, now, half_life)
                for m, s in rows:
                    acc[_s(m)] = acc.get(_s(m), 0.0) + float(s) * w
            out.append(sorted(acc.items(), key=lambda kv: (-kv[1], kv[0]))[:k])
        return out

    def _segmented(self, kind: str, half_life: float, segment: str | None, k: int) -> Scored:
        if k <= 0:
            return []
        seg = self.segment_key(segment)
        segs = [seg] if seg == "all" else [seg, "all"]
        lists = self._decayed_top(kind, half_life, segs, k)
        return next((lst for lst in lists if lst), [])

    def _shared(self, key: tuple[Any, ...], load: Callable[[], Scored]) -> Scored:
        """Lists that are the same for every user (popular, trending, fresh), cached very briefly."""
        now = time.monotonic()
        hit = self._lists.get(key)
        if hit is not None and now - hit[0] < self.settings.retrieval.shared_cache_ttl_s:
            return hit[1]
        value = load()
        self._lists[key] = (now, value)
        return value

    @_guard
    def popular(self, segment: str | None, k: int) -> Scored:
        return self._shared(("pop", segment, k), lambda: self._segmented("pop", self.pop_hl, segment, k))

    @_guard
    def trending(self, segment: str | None, k: int) -> Scored:
        return self._shared(("trend", segment, k),
                            lambda: self._segmented("trend", self.trend_hl, segment, k))

    @_guard
    def covisit(self, item_ids: Sequence[str], k: int) -> Scored:
        if not item_ids or k <= 0:
            return []
        with self.r.pipeline(transaction=False) as p:
            for iid in item_ids:
                p.zrevrange(self.keys.covisit(iid), 0, k - 1, withscores=True)
            res = p.execute()
        acc: dict[str, float] = {}
        for rank, rows in enumerate(res):
            for m, s in rows:  # recent items weigh more
                acc[_s(m)] = acc.get(_s(m), 0.0) + float(s) / (1.0 + 0.2 * rank)
        return sorted(acc.items(), key=lambda kv: (-kv[1], kv[0]))[:k]

    @_guard
    def fresh(self, k: int) -> Scored:
        if k <= 0:
            return []
        return self._shared(("fresh", k), lambda: [
            (_s(m), float(s)) for m, s in self.r.zrevrange(self.keys.fresh, 0, k - 1, withscores=True)])

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
        return {iid: _item(iid, res[2 * j], res[2 * j + 1]) for j, iid in enumerate(ids)}

    @_guard
    def posteriors(self, segment: str | None, item_ids: Sequence[str]) -> tuple[F32, F32]:
        """Beta(prior + clicks, prior + impressions - clicks); counts cached for shared_cache_ttl_s."""
        seg, now = self.segment_key(segment), time.monotonic()
        ttl = self.settings.retrieval.shared_cache_ttl_s
        cache = self._counts.setdefault(seg, {})
        stale = [i for i in item_ids if i not in cache or now - cache[i][0] >= ttl]
        if stale:
            raw = self.r.hmget(self.keys.bandit(seg), [f for i in stale for f in (f"{i}:i", f"{i}:c")])
            vals = [float(v) if v is not None else 0.0 for v in raw]
            for j, iid in enumerate(stale):
                cache[iid] = (now, vals[2 * j], vals[2 * j + 1])
            if len(cache) > self._cache_size:
                cache.clear()
        counts = np.array([cache[i][1:] for i in item_ids], np.float32).reshape(-1, 2) if item_ids \
            else np.zeros((0, 2), np.float32)
        b = self.settings.bandit
        alpha = (b.prior_alpha + counts[:, 1]).astype(np.float32)
        beta = (b.prior_beta + np.maximum(counts[:, 0] - counts[:, 1], 0.0)).astype(np.float32)
        return alpha, beta


def _sum_neighbours(lists: list[list[Any]], k: int) -> Scored:
    """Sum of co-visit counts over the recent items (more recent items weigh more)."""
    acc: dict[str, float] = {}
    for rank, flat in enumerate(lists):
        w = 1.0 / (1.0 + 0.2 * rank)
        for m, sc in zip(flat[0::2], flat[1::2], strict=True):
            key = _s(m)
            acc[key] = acc.get(key, 0.0) + float(sc) * w
    return sorted(acc.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


def _item(item_id: str, fields: list[Any], vec: bytes | None) -> ItemInfo | None:
    cats, attrs, created, active = fields
    if cats is None and created is None and vec is None:
        return None
    vector = np.frombuffer(vec, dtype=np.float32).copy() if vec else None
    return ItemInfo(item_id, json.loads(_s(cats)) if cats else [], float(_s(created)) if created else 0.0,
                    _s(active) != "0" if active is not None else True,
                    json.loads(_s(attrs)) if attrs else {}, vector)
