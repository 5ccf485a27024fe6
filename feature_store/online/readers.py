"""Read APIs over streamrec's Redis state, for SERVING (sync; bounded timeouts -> StoreUnavailable).

Example:
    >>> reader = OnlineReader.from_settings(settings)                  # doctest: +SKIP
    >>> reader.popular("device:ios", k=50)                              # doctest: +SKIP
    [('i42', 3.1), ...]
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.errors import StoreUnavailable
from core.protocols import FloatArray
from core.settings import Settings
from feature_store import transforms as tf
from feature_store.online import decay
from feature_store.online.effects import POP, TREND, decode_history
from feature_store.online.keys import Keys

F = TypeVar("F", bound=Callable[..., Any])
Scored = list[tuple[str, float]]


def _guarded(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailable(f"online state read failed: {exc}") from exc
    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class ReadParams:
    popularity_half_life_s: float = 7 * 86400.0
    trending_half_life_s: float = 3600.0
    affinity_half_life_s: float = 7 * 86400.0
    prior_alpha: float = 1.0
    prior_beta: float = 20.0
    linear_dim: int = 8

    @classmethod
    def from_settings(cls, s: Settings) -> ReadParams:
        w = s.worker
        return cls(w.popularity_half_life_s, w.trending_half_life_s, w.affinity_half_life_s,
                   s.bandit.prior_alpha, s.bandit.prior_beta)


class OnlineReader:
    """Implements core.protocols.BanditStateStore plus the candidate and user-state reads."""

    def __init__(self, r: redis.Redis, keys: Keys, params: ReadParams | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.r, self.keys, self.p, self.clock = r, keys, params or ReadParams(), clock
        self.tp = tf.TransformParams(affinity_half_life_s=self.p.affinity_half_life_s)

    @classmethod
    def from_settings(cls, s: Settings) -> OnlineReader:
        r = redis.Redis.from_url(s.redis.url or "redis://127.0.0.1:6379/0", decode_responses=True,
                                 socket_timeout=s.redis.socket_timeout_s,
                                 socket_connect_timeout=s.redis.connect_timeout_s)
        return cls(r, Keys(s.redis.key_prefix), ReadParams.from_settings(s))

    # ------------------------------------------------------------ popularity / trending
    @_guarded
    def popular(self, segment: str = "all", k: int = 100, now: float | None = None) -> Scored:
        """Top-k by time-decayed popularity (approximate across the epoch boundary)."""
        return self._decayed_top(POP, self.p.popularity_half_life_s, segment, k, now)

    @_guarded
    def trending(self, segment: str = "all", k: int = 100, now: float | None = None) -> Scored:
        return self._decayed_top(TREND, self.p.trending_half_life_s, segment, k, now)

    @_guarded
    def segments(self, kind: str = POP) -> list[str]:
        return sorted(self.r.smembers(self.keys.segments(kind)))  # type: ignore[arg-type]

    def _decayed_top(self, kind: str, hl: float, segment: str, k: int, now: float | None) -> Scored:
        t = self.clock() if now is None else now
        cur = decay.epoch_of(t, hl)
        scores: dict[str, float] = {}
        with self.r.pipeline(transaction=False) as pipe:
            for e in (cur, cur - 1):
                pipe.zrevrange(self.keys.popularity(kind, e, segment), 0, 2 * k - 1, withscores=True)
            res = pipe.execute()
        for e, rows in zip((cur, cur - 1), res, strict=True):
            w = decay.epoch_weight(e, t, hl)
            for item, s in rows:
                scores[item] = scores.get(item, 0.0) + float(s) * w
        return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]

    # ------------------------------------------------------------ co-visitation
    @_guarded
    def covisit(self, item_ids: Sequence[str], k: int = 150, per_item: int = 50) -> Scored:
        """Neighbours of ``item_ids`` (summed counts), excluding the inputs."""
        with self.r.pipeline(transaction=False) as pipe:
            for i in item_ids:
                pipe.zrevrange(self.keys.covisit(i), 0, per_item - 1, withscores=True)
            res = pipe.execute()
        scores: dict[str, float] = {}
        for rows in res:
            for item, s in rows:
                scores[item] = scores.get(item, 0.0) + float(s)
        for i in item_ids:
            scores.pop(i, None)
        return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]

    # ------------------------------------------------------------ bandits
    @_guarded
    def posteriors(self, segment: str, item_ids: Sequence[str]) -> tuple[FloatArray, FloatArray]:
        """Beta(alpha, beta) per item: prior + attributed clicks, prior + (impressions - clicks)."""
        if not item_ids:
            return np.zeros(0, np.float32), np.zeros(0, np.float32)
        fields = [f for i in item_ids for f in (f"{i}:i", f"{i}:c")]
        vals = np.array([float(v or 0) for v in self.r.hmget(self.keys.bandit(segment), fields)])
        imps, clicks = vals[0::2], vals[1::2]
        alpha = self.p.prior_alpha + clicks
        beta = self.p.prior_beta + np.maximum(imps - clicks, 0.0)
        return alpha.astype(np.float32), beta.astype(np.float32)

    @_guarded
    def linear_stats(self, item_ids: Sequence[str]) -> dict[str, tuple[FloatArray, FloatArray]]:
        """Per item (A, b) of the linear bandit: A = I + sum x x^T, b = sum r x."""
        with self.r.pipeline(transaction=False) as pipe:
            for i in item_ids:
                pipe.hgetall(self.keys.linear(i))
            res = pipe.execute()
        d = self.p.linear_dim
        out = {}
        for i, fields in zip(item_ids, res, strict=True):
            a, b = np.eye(d, dtype=np.float32), np.zeros(d, np.float32)
            for f, v in fields.items():
                parts = f.split(":")
                if parts[0] == "A":
                    a[int(parts[1]), int(parts[2])] += float(v)
                else:
                    b[int(parts[1])] += float(v)
            out[i] = (a, b)
        return out

    # ------------------------------------------------------------ users
    @_guarded
    def seen(self, user_id: str) -> set[str]:
        return set(self.r.smembers(self.keys.seen(user_id)))  # type: ignore[arg-type]

    @_guarded
    def recent(self, user_id: str, n: int = 50) -> list[str]:
        """Most recent engaged items first."""
        return [i for i, _ in decode_history(self.r.lrange(self.keys.history(user_id), 0, n - 1))]  # type: ignore[arg-type]

    @_guarded
    def affinities(self, user_id: str, now: float | None = None) -> dict[str, float]:
        """Decayed category affinities (FEATURES' transform state, projected at ``now``)."""
        st = tf.loads_user(self.r.get(self.keys.user_features(user_id)), user_id)  # type: ignore[arg-type]
        row = tf.project_user_affinity(st, now=now if now is not None else self.clock(), params=self.tp)
        return dict(zip(row["affinity_categories"], row["affinity_scores"], strict=True))

    @_guarded
    def user(self, user_id: str) -> dict[str, Any] | None:
        raw = self.r.hgetall(self.keys.user(user_id))
        if not raw:
            return None
        return {"user_id": user_id, "segment": raw.get("segment") or None,  # type: ignore[union-attr]
                "attributes": json.loads(raw.get("attributes", "{}"))}  # type: ignore[union-attr]

    # ------------------------------------------------------------ catalog
    @_guarded
    def items(self, item_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        with self.r.pipeline(transaction=False) as pipe:
            for i in item_ids:
                pipe.hgetall(self.keys.item(i))
            res = pipe.execute()
        return [_item_record(i, raw) if raw else None for i, raw in zip(item_ids, res, strict=True)]

    @_guarded
    def active_items(self) -> set[str]:
        return set(self.r.smembers(self.keys.active_items))  # type: ignore[arg-type]

    @_guarded
    def fresh(self, k: int = 50, max_age_s: float | None = None, now: float | None = None) -> Scored:
        """Newest active items first: (item_id, created_at)."""
        t = self.clock() if now is None else now
        low = "-inf" if max_age_s is None else t - max_age_s
        rows = self.r.zrevrangebyscore(self.keys.fresh, "+inf", low, start=0, num=k, withscores=True)
        return [(i, float(s)) for i, s in rows]  # type: ignore[union-attr]

    @_guarded
    def vectors(self, item_ids: Sequence[str]) -> dict[str, FloatArray]:
        """Content vectors (float32) of the items that have one."""
        if not item_ids:
            return {}
        raw = self.r.execute_command("MGET", *[self.keys.vector(i) for i in item_ids], NEVER_DECODE=True)
        return {i: np.frombuffer(v, np.float32) for i, v in zip(item_ids, raw, strict=True) if v}

    @_guarded
    def item_counters(self, item_id: str, now: float | None = None) -> dict[str, float]:
        """Impressions/clicks/CTR over 1 h and 24 h (FEATURES' item state, projected at ``now``)."""
        st = tf.loads_item(self.r.get(self.keys.item_features(item_id)), item_id)  # type: ignore[arg-type]
        row = tf.project_item_realtime(st, now=now if now is not None else self.clock())
        return {k: float(v) for k, v in row.items() if k not in ("item_id", "event_timestamp")}

    @_guarded
    def stats(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.r.hgetall(self.keys.stats).items()}  # type: ignore[union-attr]


def _item_record(item_id: str, raw: dict[str, str]) -> dict[str, Any]:
    return {"item_id": item_id, "title": raw.get("title", ""), "text": raw.get("text", ""),
            "categories": json.loads(raw.get("categories", "[]")),
            "attributes": json.loads(raw.get("attributes", "{}")),
            "created_at": float(raw.get("created_at", 0.0)), "active": raw.get("active") == "1"}
