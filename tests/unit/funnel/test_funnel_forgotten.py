"""Issue 16: a deleted item or user leaves a serving process's caches at once (``Pipeline.forget``, fed
by ``services.pipeline.forgotten``): the last-feed cache and the popularity snapshot that degraded
answers come from, and every feed the process makes afterwards, even one computed from state read
before the deletion (here: an in-process store that still holds the item)."""

from __future__ import annotations

import time

from funnel_events import NOW, catalog, crowd, memory_state

from core.deletions import pseudonym
from core.events import Feed, FeedItem
from core.settings import Settings
from funnel.fallback import FeedCache, Forgotten, degraded_feed, without
from funnel.pipeline import Pipeline

ITEMS = [f"i{j:02d}" for j in range(12)]


def _pipeline() -> Pipeline:
    settings = Settings(rerank={"explore_slots": 0, "diversity": "none"})
    state = memory_state(settings, catalog({i: ["c"] for i in ITEMS}),
                         crowd({i: 30 - j for j, i in enumerate(ITEMS)}, device="web"))
    return Pipeline(settings, state)


def _feed(user: str, items: list[str]) -> Feed:
    return Feed(feed_id="f", user_id=user, version=1, generated_at=NOW,
                items=[FeedItem(item_id=i, rank=r, score=1.0, source="popular") for r, i in enumerate(items)])


def test_without_drops_the_items_and_renumbers_the_ranks():
    feed = _feed("u", ["a", "b", "c"])
    out = without(feed, {"b"}.__contains__)
    assert [(it.item_id, it.rank) for it in out.items] == [("a", 0), ("c", 1)]
    assert without(feed, {"x"}.__contains__) is feed
    gone = Forgotten()
    assert gone.clean(feed) is feed  # nothing forgotten: the same object, no copy
    gone.add(["c"], [])
    assert [it.item_id for it in gone.clean(feed).items] == ["a", "b"]


def test_a_forgotten_item_leaves_cached_feeds_the_snapshot_and_every_later_feed():
    p = _pipeline()
    first = p.feed("u1", n=5, now=NOW).feed
    assert [it.item_id for it in first.items][:2] == ["i00", "i01"], first.items
    assert any(i == "i00" for i, _ in p.snapshot.get(None))

    p.forget(["i00"])

    cached = degraded_feed("u1", 5, p.cache, p.snapshot, None, "store", NOW)
    assert [it.item_id for it in cached.items] == [it.item_id for it in first.items if it.item_id != "i00"]
    assert [it.rank for it in cached.items] == list(range(len(cached.items)))
    popular = degraded_feed("nobody", 5, p.cache, p.snapshot, None, "store", NOW)
    assert popular.items and "i00" not in [it.item_id for it in popular.items]
    # the in-process store still calls i00 active (as a cache filled before the deletion would):
    # the feed is cleaned all the same, and so is what the cache keeps of it
    again = p.feed("u1", n=5, now=NOW).feed
    assert again.items and "i00" not in [it.item_id for it in again.items]
    assert "i00" not in [it.item_id for it in p.cache.get("u1").items]  # type: ignore[union-attr]
    # an experiment arm (a variant) shares the record
    assert "i00" not in [it.item_id for it in p.variant(p.settings).feed("u2", n=5, now=NOW).feed.items]


def test_a_forgotten_user_loses_the_cached_feed_and_none_is_cached_again():
    p = _pipeline()
    p.feed("u1", n=5, now=NOW)
    p.feed("u2", n=5, now=NOW)
    p.forget([], [pseudonym(p.settings.tenancy.tenant, "user", "u1")])
    assert p.cache.get("u1") is None and p.cache.get("u2") is not None
    p.feed("u1", n=5, now=NOW)  # a request computed from state read before the erasure
    assert p.cache.get("u1") is None
    fallback = degraded_feed("u1", 5, p.cache, p.snapshot, None, "store", NOW)
    assert fallback.items[0].source == "popular_snapshot"


def test_deletions_are_remembered_for_keep_s_only():
    gone = Forgotten(keep_s=0.05)
    gone.add(["a"], ["h"])
    assert gone.item("a") and gone.user("h")
    time.sleep(0.1)
    gone.prune()
    assert not gone.item("a") and not gone.user("h")  # the id may come back as a new catalogue item


def test_a_cache_of_its_own_keeps_no_forgotten_item():
    cache = FeedCache(capacity=4)
    cache.forgotten.add(["b"], [])
    cache.put(_feed("u", ["a", "b"]))
    assert [it.item_id for it in cache.get("u").items] == ["a"]  # type: ignore[union-attr]
