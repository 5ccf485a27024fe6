"""Issue 16: a publisher supersedes its own recent feeds once it hears of a deletion (a feed computed
before it heard may reach the topic after the eraser rewrote it): a version without the deleted item,
a tombstone for a deleted user, nothing when no deletion came."""

from __future__ import annotations

import time

from core.events import Feed, FeedItem
from funnel.fallback import Forgotten
from services.publisher.recent import RecentFeeds


def _feed(user: str, items: list[str], version: int = 5) -> Feed:
    return Feed(feed_id=f"f-{user}", user_id=user, version=version, generated_at=time.time(),
                items=[FeedItem(item_id=i, rank=r, score=1.0, source="popular") for r, i in enumerate(items)])


def test_recent_feeds_holding_a_deleted_item_are_superseded_once():
    gone = Forgotten(user_key=lambda u: f"h({u})")
    recent = RecentFeeds(gone)
    recent.sent(_feed("a", ["x", "gone", "y"]))
    recent.sent(_feed("b", ["x", "y"]))
    recent.sent(_feed("c", ["gone"]))
    assert recent.corrections() == []  # nothing deleted yet: no work
    gone.add(["gone"], ["h(c)"])
    fixes = dict(recent.corrections())
    assert set(fixes) == {"a", "c"} and fixes["c"] is None  # c was deleted: a tombstone
    a = fixes["a"]
    assert a is not None and [it.item_id for it in a.items] == ["x", "y"] and a.trigger == "deletion"
    assert a.version > 5 and a.feed_id != "f-a"
    assert recent.corrections() == []  # the same deletion is not corrected twice


def test_only_the_last_keep_s_are_remembered():
    gone = Forgotten()
    recent = RecentFeeds(gone, keep_s=0.05)
    recent.sent(_feed("old", ["gone"]))
    time.sleep(0.1)
    recent.sent(_feed("new", ["gone"]))
    gone.add(["gone"], [])
    assert [u for u, _ in recent.corrections()] == ["new"]
