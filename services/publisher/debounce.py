"""Per-user debouncing of feed triggers, with the Kafka offsets that are safe to commit.

A trigger makes the user due ``debounce_s`` after the first pending trigger; later triggers for the
same user join it. The committable offset of a partition is the lowest offset still pending there
(a crash then replays those triggers: at-least-once, and recomputing a feed is idempotent).

Example:
    >>> d = Debouncer(0.1)
    >>> d.add("u1", 10.0, now=0.0, tp=("t", 0), offset=5)
    >>> d.due(now=0.05), [p.user_id for p in d.due(now=0.2)]
    ([], ['u1'])
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

TopicPartition = tuple[str, int]


@dataclass
class Pending:
    user_id: str
    due_at: float
    first_event_ts: float | None  # earliest pending interaction (None: schedule / model refresh only)
    reason: str = "interaction"
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    attempts: int = 0


class Debouncer:
    """Pending triggers per user. Users with a pending interaction are few (a debounce window's worth)
    and are kept apart from refreshes (schedule, model: possibly every active user), which sit in a
    heap by due time, so taking the next due users costs O(limit), not a sort of everything pending."""

    def __init__(self, debounce_s: float) -> None:
        self.debounce_s = debounce_s
        self._pending: dict[str, Pending] = {}
        self._events: set[str] = set()  # users whose pending trigger carries an interaction
        self._refresh: list[tuple[float, int, str]] = []  # (due_at, seq, user), stale entries skipped
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, user_id: str, event_ts: float | None, now: float, tp: TopicPartition | None = None,
            offset: int | None = None, reason: str = "interaction") -> None:
        p = self._pending.get(user_id)
        if p is None:
            p = self._pending[user_id] = Pending(user_id, now + self.debounce_s, None, reason)
        if event_ts is not None:
            p.first_event_ts = event_ts if p.first_event_ts is None else min(p.first_event_ts, event_ts)
            p.reason = reason
        if tp is not None and offset is not None:
            p.offsets[tp] = min(p.offsets.get(tp, offset), offset)
        self._file(p)

    def _file(self, p: Pending) -> None:
        if p.first_event_ts is not None:
            self._events.add(p.user_id)
        else:
            heapq.heappush(self._refresh, (p.due_at, next(self._seq), p.user_id))

    def due(self, now: float, limit: int | None = None) -> list[Pending]:
        """Up to ``limit`` due users, those with pending interactions first (oldest event first),
        then schedule/model refreshes (earliest due first), so a bulk refresh never delays a user
        who just acted."""
        events = sorted((self._pending[u] for u in self._events if self._pending[u].due_at <= now),
                        key=lambda p: p.first_event_ts or 0.0)[:limit]
        for p in events:
            self._take(p)
        out = events
        while (limit is None or len(out) < limit) and self._refresh and self._refresh[0][0] <= now:
            due_at, _, user = heapq.heappop(self._refresh)
            refresh = self._pending.get(user)
            if refresh is not None and refresh.first_event_ts is None and refresh.due_at == due_at:
                self._take(refresh)
                out.append(refresh)
        return out

    def _take(self, p: Pending) -> None:
        del self._pending[p.user_id]
        self._events.discard(p.user_id)

    def retry(self, p: Pending, now: float, delay_s: float) -> None:
        """Put back a pending trigger whose feed could not be computed (e.g. the store is down)."""
        p.attempts += 1
        self.defer(p, now + delay_s)

    def defer(self, p: Pending, due_at: float) -> None:
        """Put back a trigger that was due but held back (a refresh over its rate), unchanged."""
        p.due_at = due_at
        if self._pending.setdefault(p.user_id, p) is p:
            self._file(p)

    def next_due_in(self, now: float) -> float | None:
        while self._refresh and not self._live(self._refresh[0]):
            heapq.heappop(self._refresh)
        dues = [self._pending[u].due_at for u in self._events]
        if self._refresh:
            dues.append(self._refresh[0][0])
        return max(0.0, min(dues) - now) if dues else None

    def _live(self, entry: tuple[float, int, str]) -> bool:
        p = self._pending.get(entry[2])
        return p is not None and p.first_event_ts is None and p.due_at == entry[0]

    def min_offsets(self) -> dict[TopicPartition, int]:
        out: dict[TopicPartition, int] = {}
        for p in self._pending.values():
            for tp, off in p.offsets.items():
                out[tp] = min(out.get(tp, off), off)
        return out


class TokenBucket:
    """At most ``rate`` takes per second on average, bursts up to ``rate`` (one second's worth)."""

    def __init__(self, rate: float, now: float) -> None:
        self.rate, self.tokens, self._at = rate, rate, now

    def take(self, now: float) -> bool:
        self.tokens = min(self.rate, self.tokens + (now - self._at) * self.rate)
        self._at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def wait_s(self) -> float:
        """Seconds until the next token."""
        return max(1.0 - self.tokens, 0.0) / self.rate
