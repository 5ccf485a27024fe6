"""A Redis mutation plan: what one batch changes, built by pure functions, applied in one MULTI/EXEC."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field


def _nested() -> defaultdict[str, defaultdict[str, float]]:
    return defaultdict(lambda: defaultdict(float))


@dataclass
class Plan:
    """Additive increments (commute, so replay order does not matter) plus absolute writes."""

    zincr: defaultdict[str, defaultdict[str, float]] = field(default_factory=_nested)
    hincr: defaultdict[str, defaultdict[str, float]] = field(default_factory=_nested)
    hset: defaultdict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    lists: dict[str, list[str]] = field(default_factory=dict)
    lpush: defaultdict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    ltrim: dict[str, int] = field(default_factory=dict)
    sadd: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    srem: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    zadd: defaultdict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    zrem: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    setex: dict[str, tuple[bytes | str, int | None]] = field(default_factory=dict)
    expire: dict[str, int] = field(default_factory=dict)
    zcap: dict[str, int] = field(default_factory=dict)

    def command_count(self) -> int:
        return (sum(len(v) for v in self.zincr.values()) + sum(len(v) for v in self.hincr.values())
                + len(self.hset) + len(self.lists) + len(self.sadd) + len(self.setex) + len(self.expire))
