"""Rate limits: a token bucket per (credential, scope), kept in Redis so every API process and replica
draws from the same bucket. ``auth.rate_limits`` sets each scope's rate (tokens/s) and burst (bucket
size). A request beyond it gets a 429 with ``Retry-After`` (whole seconds until a token is back).

The bucket is one Redis hash updated by one Lua script on Redis' own clock (``TIME``), so replicas
with skewed clocks still share one limit. When Redis cannot be reached the request is let through
(and counted in ``streamrec_api_ratelimit_unavailable``): a limiter outage never takes the API down.
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import TYPE_CHECKING

import redis
from fastapi import HTTPException
from prometheus_client import CollectorRegistry, Counter

from core.settings import RateLimit, Settings

if TYPE_CHECKING:
    from services.api.auth import Principal

log = logging.getLogger(__name__)

# KEYS[1] bucket; ARGV: rate/s, burst, ttl s. Returns {allowed 0/1, seconds until one token (x1000)}.
BUCKET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(b[1]), tonumber(b[2])
if tokens == nil then tokens, at = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed = 0
if tokens >= 1 then tokens = tokens - 1; allowed = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
local wait = 0
if allowed == 0 then wait = math.ceil((1 - tokens) / rate * 1000) end
return {allowed, wait}
"""


class RateLimited(HTTPException):
    def __init__(self, scope: str, limit: RateLimit, wait_s: float) -> None:
        retry = max(1, math.ceil(wait_s))
        super().__init__(429, f"rate limit of scope {scope!r}: {limit.rate_per_s:g}/s, bursts of "
                              f"{limit.burst} (auth.rate_limits); retry after {retry} s",
                         headers={"Retry-After": str(retry)})


class RateLimiter:
    """``take(principal, scope)`` spends one token or raises :class:`RateLimited`."""

    def __init__(self, settings: Settings, client: redis.Redis | None, registry: CollectorRegistry) -> None:
        self.limits = settings.auth.rate_limits
        self.prefix = f"{settings.redis.key_prefix}rl:"
        self.client = client
        self._script = client.register_script(BUCKET) if client is not None else None
        self.unavailable = Counter("streamrec_api_ratelimit_unavailable",
                                   "Requests let through because the rate limiter's Redis was unreachable",
                                   registry=registry)
        self.limited = Counter("streamrec_api_rate_limited", "Requests refused with 429", ["scope"],
                               registry=registry)

    def warm(self) -> None:
        """Load the script now (a Redis that is down is the first request's problem: let through)."""
        if self._script is not None:
            with contextlib.suppress(redis.RedisError):
                self.client.script_load(BUCKET)  # type: ignore[union-attr]  # the server caches it

    def take(self, principal: Principal, scope: str) -> None:
        limit = self.limits.get(scope)
        if limit is None or self._script is None:
            return
        key = f"{self.prefix}{{{principal.subject}}}:{scope}"
        ttl = int(limit.burst / limit.rate_per_s) + 60
        try:
            allowed, wait_ms = self._script(keys=[key], args=[limit.rate_per_s, limit.burst, ttl])
        except redis.RedisError as exc:
            self.unavailable.inc()
            log.warning("rate limiter unavailable (%s); request let through", type(exc).__name__)
            return
        if not allowed:
            self.limited.labels(scope).inc()
            raise RateLimited(scope, limit, int(wait_ms) / 1e3)
