"""What a request gets when the online store is down: the user's last feed, else a popularity snapshot.

Both are kept in process, refreshed by every successful request, and bounded in size. Neither ever
holds what the eraser deleted: :class:`Forgotten` is the process's record of the deletions it heard of
(``services.pipeline.forgotten`` feeds it), and both caches drop those items and users at once and
refuse them afterwards.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Collection

from core.events import Feed, FeedItem
from core.online import Scored

KEEP_S = 600.0  # how long a deletion is remembered: far longer than any cache (item infos: 30 s) or feed


def _ident(user_id: str) -> str:
    return user_id


class Forgotten:
    """Items and users the eraser deleted lately (users by ``user_key``: the pseudonym a deletion names
    them by), as this process heard. A feed computed from state read before a deletion, or handed on
    after it, is cleaned against it before it is served, cached or published. Readers take no lock:
    each update replaces the dicts whole."""

    def __init__(self, user_key: Callable[[str], str] = _ident, keep_s: float = KEEP_S) -> None:
        self.user_key, self.keep_s = user_key, keep_s
        self._items: dict[str, float] = {}
        self._users: dict[str, float] = {}
        self.generation = 0  # deletions heard so far: a reader compares it with the last it saw

    def add(self, items: Collection[str], users: Collection[str]) -> None:
        now = time.monotonic()
        self._items = {**self._fresh(self._items, now), **dict.fromkeys(items, now)}
        self._users = {**self._fresh(self._users, now), **dict.fromkeys(users, now)}
        self.generation += 1

    def prune(self) -> None:
        """Forget deletions older than ``keep_s`` (an item id may come back as a new catalogue item)."""
        now = time.monotonic()
        if self._items or self._users:
            self._items, self._users = self._fresh(self._items, now), self._fresh(self._users, now)

    def _fresh(self, entries: dict[str, float], now: float) -> dict[str, float]:
        return {k: t for k, t in entries.items() if now - t < self.keep_s}

    def item(self, item_id: str) -> bool:
        return item_id in self._items

    def user(self, user_id: str) -> bool:
        return bool(self._users) and self.user_key(user_id) in self._users

    def clean(self, feed: Feed) -> Feed:
        """``feed`` without the forgotten items (the same object when it holds none: the usual case
        costs one emptiness test)."""
        gone = self._items
        if not gone or not any(it.item_id in gone for it in feed.items):
            return feed
        return without(feed, gone.__contains__)


def without(feed: Feed, gone: Callable[[str], bool]) -> Feed:
    """``feed`` without the items ``gone`` names, the others' ranks renumbered 0..n-1."""
    kept = [it for it in feed.items if not gone(it.item_id)]
    if len(kept) == len(feed.items):
        return feed
    items = [it if it.rank == r else it.model_copy(update={"rank": r}) for r, it in enumerate(kept)]
    return feed.model_copy(update={"items": items})


def superseding(clean: Feed, old: Feed, trigger: str, now: float) -> Feed:
    """``clean`` (``old`` without deleted items) as a new feed that supersedes ``old`` for every reader:
    a new id, a higher version, made ``now`` by ``trigger``."""
    return clean.model_copy(update={"feed_id": uuid.uuid4().hex, "generated_at": now,
                                    "version": max(old.version + 1, int(now * 1000)), "trigger": trigger,
                                    "trigger_event_ts": None})


class FeedCache:
    """LRU of the last good feed per user."""

    def __init__(self, capacity: int = 100_000, forgotten: Forgotten | None = None) -> None:
        self._data: OrderedDict[str, Feed] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()
        self.forgotten = forgotten if forgotten is not None else Forgotten()

    def put(self, feed: Feed) -> None:
        if self.forgotten.user(feed.user_id):
            return  # computed from state read before the user was erased
        feed = self.forgotten.clean(feed)
        with self._lock:
            self._data[feed.user_id] = feed
            self._data.move_to_end(feed.user_id)
            while len(self._data) > self._capacity:
                self._data.popitem(last=False)

    def get(self, user_id: str) -> Feed | None:
        with self._lock:
            return self._data.get(user_id)

    def purge(self, users: Collection[str] = ()) -> int:
        """Apply the forgotten items, and drop the feeds of ``users`` (as ``forgotten.user_key`` names
        them), in every cached feed; returns how many feeds were dropped or rewritten. The scan runs
        outside the lock (a feed put meanwhile was cleaned by ``put``)."""
        with self._lock:
            entries = list(self._data.items())
        wanted, key = set(users), self.forgotten.user_key
        drop = {u for u, _ in entries if wanted and key(u) in wanted}
        fix = [u for u, f in entries if u not in drop and self.forgotten.clean(f) is not f]
        with self._lock:
            for user in drop:
                self._data.pop(user, None)
            for user in fix:
                if user in self._data:
                    self._data[user] = self.forgotten.clean(self._data[user])
        return len(drop) + len(fix)


class PopularitySnapshot:
    """The most recent popularity list read from the store, per segment (``None`` = global). Kept as
    read (every request hands one in: no per-feed work) and cleaned of the forgotten items when a
    degraded answer reads it."""

    def __init__(self, forgotten: Forgotten | None = None) -> None:
        self._by_segment: dict[str | None, Scored] = {}
        self.forgotten = forgotten if forgotten is not None else Forgotten()

    def update(self, segment: str | None, scored: Scored) -> None:
        if scored:
            self._by_segment[segment] = scored

    def _clean(self, scored: Scored) -> Scored:
        gone = self.forgotten.item
        return [pair for pair in scored if not gone(pair[0])]

    def purge(self) -> None:
        """Drop the forgotten items from every segment's list."""
        self._by_segment = {seg: self._clean(scored) for seg, scored in self._by_segment.items()}

    def get(self, segment: str | None) -> Scored:
        return self._clean(self._by_segment.get(segment) or self._by_segment.get(None) or next(
            iter(self._by_segment.values()), []))


def degraded_feed(user_id: str, n: int, cache: FeedCache, snapshot: PopularitySnapshot,
                  segment: str | None, reason: str, now: float) -> Feed:
    """A valid feed with ``degraded=True`` built without touching any store."""
    last = cache.get(user_id)
    if last is not None:
        last = cache.forgotten.clean(last)  # a deletion heard while this answer is made
        items = [it.model_copy(update={"rules": [*it.rules, "fallback:cached"]}) for it in last.items[:n]]
        return last.model_copy(update={"feed_id": uuid.uuid4().hex, "generated_at": now, "items": items,
                                       "degraded": True, "trigger": f"fallback:{reason}",
                                       "trigger_event_ts": None})
    gone = snapshot.forgotten.item
    top = list(itertools.islice((pair for pair in snapshot.get(segment) if not gone(pair[0])), n))
    items = [FeedItem(item_id=iid, rank=r, score=float(s), source="popular_snapshot",
                      rules=["fallback:snapshot"]) for r, (iid, s) in enumerate(top)]
    return Feed(feed_id=uuid.uuid4().hex, user_id=user_id, version=int(now * 1000), generated_at=now,
                items=items, degraded=True, trigger=f"fallback:{reason}")
