"""The feeds a publisher sent lately, so that a deletion reaches its own in-flight feeds too.

The eraser rewrites what is on the ``feeds`` topic a second after it announced a deletion
(``services.privacy.feeds``), and every feed a publisher makes after hearing of it is clean
(``funnel.pipeline.Pipeline.forget``). Left over: a feed computed just before the publisher heard,
whose record reaches the log only after the eraser read it (a loaded publisher, a slow broker). So the
publisher remembers what it sent in the last ``keep_s``, and once it hears of a deletion
(``Forgotten.generation`` moved) it sends, through the same producer and so after the feed itself,
a version of each such feed without the deleted items, or a tombstone for a deleted user.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from core.events import Feed
from funnel.fallback import Forgotten, superseding

KEEP_S = 30.0
CAPACITY = 50_000
TRIGGER = "deletion"


class RecentFeeds:
    """User -> (monotonic time sent, the feed), for the last ``keep_s`` (at most ``capacity`` users)."""

    def __init__(self, forgotten: Forgotten, keep_s: float = KEEP_S, capacity: int = CAPACITY) -> None:
        self.forgotten, self.keep_s, self.capacity = forgotten, keep_s, capacity
        self._sent: OrderedDict[str, tuple[float, Feed]] = OrderedDict()
        self._generation = forgotten.generation

    def sent(self, feed: Feed) -> None:
        now = time.monotonic()
        self._sent[feed.user_id] = (now, feed)
        self._sent.move_to_end(feed.user_id)
        while self._sent and (len(self._sent) > self.capacity
                              or now - next(iter(self._sent.values()))[0] > self.keep_s):
            self._sent.popitem(last=False)

    def corrections(self) -> list[tuple[str, Feed | None]]:
        """(user, the feed that supersedes the one sent, or None: a tombstone) for every recent feed
        that holds what was deleted since the last call; empty (one comparison) when nothing was."""
        if self.forgotten.generation == self._generation:
            return []
        self._generation = self.forgotten.generation
        out: list[tuple[str, Feed | None]] = []
        for user, (at, feed) in list(self._sent.items()):
            if self.forgotten.user(user):
                del self._sent[user]
                out.append((user, None))
                continue
            clean = self.forgotten.clean(feed)
            if clean is not feed:
                clean = superseding(clean, feed, TRIGGER, time.time())
                self._sent[user] = (at, clean)
                out.append((user, clean))
        return out
