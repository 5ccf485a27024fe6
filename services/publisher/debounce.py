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


def _priority(p: Pending) -> tuple[bool, float]:
    return (p.first_event_ts is None, p.due_at if p.first_event_ts is None else p.first_event_ts)


class Debouncer:
    def __init__(self, debounce_s: float) -> None:
        self.debounce_s = debounce_s
        self._pending: dict[str, Pending] = {}

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

    def due(self, now: float, limit: int | None = None) -> list[Pending]:
        """Up to ``limit`` due users, those with pending interactions first (oldest event first),
        then schedule/model refreshes, so a bulk refresh never delays a user who just acted."""
        ready = sorted((p for p in self._pending.values() if p.due_at <= now), key=_priority)[:limit]
        for p in ready:
            del self._pending[p.user_id]
        return ready

    def retry(self, p: Pending, now: float, delay_s: float) -> None:
        """Put back a pending trigger whose feed could not be computed (e.g. the store is down)."""
        p.attempts += 1
        p.due_at = now + delay_s
        self._pending.setdefault(p.user_id, p)

    def next_due_in(self, now: float) -> float | None:
        if not self._pending:
            return None
        return max(0.0, min(p.due_at for p in self._pending.values()) - now)

    def min_offsets(self) -> dict[TopicPartition, int]:
        out: dict[TopicPartition, int] = {}
        for p in self._pending.values():
            for tp, off in p.offsets.items():
                out[tp] = min(out.get(tp, off), off)
        return out
