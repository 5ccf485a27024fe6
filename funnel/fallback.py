"""What a request gets when the online store is down: the user's last feed, else a popularity snapshot.

Both are kept in process, refreshed by every successful request, and bounded in size.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict

from core.events import Feed, FeedItem
from core.online import Scored


class FeedCache:
    """LRU of the last good feed per user."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._data: OrderedDict[str, Feed] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def put(self, feed: Feed) -> None:
        with self._lock:
            self._data[feed.user_id] = feed
            self._data.move_to_end(feed.user_id)
            while len(self._data) > self._capacity:
                self._data.popitem(last=False)

    def get(self, user_id: str) -> Feed | None:
        with self._lock:
            return self._data.get(user_id)


class PopularitySnapshot:
    """The most recent popularity list read from the store, per segment (``None`` = global)."""

    def __init__(self) -> None:
        self._by_segment: dict[str | None, Scored] = {}

    def update(self, segment: str | None, scored: Scored) -> None:
        if scored:
            self._by_segment[segment] = list(scored)

    def get(self, segment: str | None) -> Scored:
        return self._by_segment.get(segment) or self._by_segment.get(None) or next(
            iter(self._by_segment.values()), [])


def degraded_feed(user_id: str, n: int, cache: FeedCache, snapshot: PopularitySnapshot,
                  segment: str | None, reason: str, now: float) -> Feed:
    """A valid feed with ``degraded=True`` built without touching any store."""
    last = cache.get(user_id)
    if last is not None:
        items = [it.model_copy(update={"rules": [*it.rules, "fallback:cached"]}) for it in last.items[:n]]
        return last.model_copy(update={"feed_id": uuid.uuid4().hex, "generated_at": now, "items": items,
                                       "degraded": True, "trigger": f"fallback:{reason}",
                                       "trigger_event_ts": None})
    top = snapshot.get(segment)[:n]
    items = [FeedItem(item_id=iid, rank=r, score=float(s), source="popular_snapshot",
                      rules=["fallback:snapshot"]) for r, (iid, s) in enumerate(top)]
    return Feed(feed_id=uuid.uuid4().hex, user_id=user_id, version=int(now * 1000), generated_at=now,
                items=items, degraded=True, trigger=f"fallback:{reason}")
