"""The closed-loop harness without a stack: arrivals, visits to feeds from the topic (attributed
reactions, truth scored before the user reacts), organic views, new items timed to their first feed,
and the results' keys and judgements."""

from __future__ import annotations

import collections
import json
from typing import Any

import pytest

from core.events import Feed, FeedItem
from core.topics import Topics
from models.simulator import World, WorldConfig
from services.demo.closed_loop import ClosedLoop, LoopOptions, NewItem
from services.demo.kafka_io import FeedRecord
from services.demo.loop_report import render_loop_html
from services.demo.loop_results import Span, new_items_report, results

NOW = 1.8e9


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def send(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self.sent.append((topic, json.loads(value)))

    def flush(self, timeout: float | None = None) -> None:
        return None


def _loop(**kw: Any) -> tuple[ClosedLoop, Recorder, Topics]:
    opts = LoopOptions(**{"users": 40, "items": 100, "duration_s": 100.0, "visits_per_s": 10.0,
                          "organic_per_s": 0.0, "new_items_per_min": 0.0, **kw})
    world = World(WorldConfig(n_users=opts.users, n_items=opts.items, seed=4, epoch=NOW))
    rec, topics = Recorder(), Topics("t-")
    producer: Any = rec
    loop = ClosedLoop(world, producer, topics, opts)
    loop.publish_catalog(NOW)
    loop.start(NOW)
    return loop, rec, topics


def _feed(user: str, items: list[str], fid: str = "f1") -> Feed:
    shown = [FeedItem(item_id=i, rank=r, score=1.0, source="fresh", propensity=0.5)
             for r, i in enumerate(items)]
    return Feed(feed_id=fid, user_id=user, version=1, generated_at=NOW, model_version="r1",
                index_version="x1", items=shown)


def test_users_arrive_over_the_run_and_browse_organically_until_they_have_a_feed():
    loop, rec, topics = _loop()
    loop.tick(NOW, 1.0, collections.deque())
    arrived = [v for t, v in rec.sent if t == topics.users]
    assert len(arrived) == len(loop.active) == 20  # half at the start
    views = [v for t, v in rec.sent if t == topics.interactions]
    assert views and all(v.get("feed_id") is None for v in views) and loop.visits == 0
    loop.tick(NOW + 99.9, 1.0, collections.deque())
    assert len(loop.active) == 40  # the rest arrived evenly until the end


def test_a_visit_shows_the_latest_feed_and_reacts_with_attribution_after_scoring_it():
    loop, rec, topics = _loop(initial_users=1.0, shown=5)
    user = loop.world.user_ids[0]
    items = loop.world.true_top_items(user, 8)
    feeds = collections.deque([FeedRecord(_feed(user, items), NOW)])
    loop.tick(NOW, 0.0, feeds)  # everyone arrives, the feed is received
    loop.active = [user]  # only this user visits
    rec.sent.clear()
    loop.tick(NOW + 1.0, 0.1, feeds)  # one visit
    events = [v for t, v in rec.sent if t == topics.interactions]
    assert loop.visits == 1 and {e["feed_id"] for e in events} == {"f1"}
    assert {e["item_id"] for e in events if e["type"] == "impression"} == set(items[:5])  # the shown part
    assert all(e["propensity"] == 0.5 and e["position"] == items.index(e["item_id"]) for e in events)
    m = loop.moments[0]
    assert m.cold and m.ours == pytest.approx(m.oracle) and m.oracle > m.random  # the user's best items
    assert (m.model_version, m.index_version) == ("r1", "x1")
    acted = {e["item_id"] for e in events if e["type"] != "impression"}
    assert loop.users[user].seen == acted  # what the platform never shows again


def test_new_items_are_timed_from_upsert_to_their_first_feed():
    loop, _, _ = _loop(initial_users=1.0, new_items_per_min=60.0, visits_per_s=0.0)
    loop.tick(NOW + 1.0, 3.0, collections.deque())  # three new items
    new = list(loop.new_items)
    assert len(new) == 3 and all(loop.world.has_item(i) for i in new)
    user = loop.world.user_ids[0]
    feeds = collections.deque([FeedRecord(_feed(user, [new[0], loop.world.item_ids[0]]), NOW + 21.0),
                               FeedRecord(_feed(user, [new[1]], "f2"), NOW + 200.0)])
    loop.tick(NOW + 201.0, 0.0, feeds)
    first = loop.new_items[new[0]]
    assert first.first_feed == NOW + 21.0 and first.first_source == "fresh" and first.first_rank == 0
    report = new_items_report(loop.new_items, Span(NOW, 300.0))
    assert report["judged"] == 3 and report["in_a_feed_within_60s"] == 1 and report["never_in_a_feed"] == 1
    assert report["within_60s"] == pytest.approx(1 / 3, abs=1e-4)  # late and never-shown items are misses


def test_items_too_young_to_judge_are_left_out():
    items = {"a": NewItem(NOW + 250.0), "b": NewItem(NOW + 10.0, first_feed=NOW + 30.0)}
    report = new_items_report(items, Span(NOW, 300.0))
    assert report["upserted"] == 2 and report["judged"] == 1 and report["within_60s"] == 1.0


def test_results_have_the_issue_keys_and_the_end_window():
    loop, _, _ = _loop(initial_users=1.0, visits_per_s=20.0, final_s=20.0, window_s=10.0)
    user_feeds = collections.deque(FeedRecord(_feed(u, loop.world.item_ids[:10], f"f{k}"), NOW)
                                   for k, u in enumerate(loop.world.user_ids))
    for k in range(100):
        loop.tick(NOW + k, 1.0, user_feeds)
    models = [{"kind": k, "version": v, "status": "active", "promoted_at": NOW + 50.0}
              for k, v in (("ranker", "r1"), ("two_tower", "t1"), ("i2i", "r1"))]
    indexes = [{"version": "x1", "model_version": "t1"}]  # the feeds carry index x1, built from t1
    out = results(loop, Span(NOW, 100.0), {"models": models, "indexes": indexes}, {})
    assert set(out["ctr"]) >= {"ours", "random", "oracle"}
    for key in ("lift_vs_random", "gap_captured", "cold_user_lift", "new_items_shown_within_60s", "timeline"):
        assert key in out
    assert out["ctr"]["window_t"] == [80.0, 100.0] and len(out["timeline"]) == 10
    assert out["lift_vs_random"] == pytest.approx(out["ctr"]["ours"] / out["ctr"]["random"], rel=1e-3)
    fresh = out["shown_by_source"]["end"]["fresh"]
    assert fresh["share"] == 1.0  # every slot of these feeds says "fresh"
    assert fresh["mean_score"] == 1.0 and fresh["mean_position"] == pytest.approx(4.5)  # 10 shown, ranks 0-9
    served = {p["kind"]: p["first_served_t"] for p in out["promotions"]}
    assert served == {"ranker": 0.0, "two_tower": 0.0, "i2i": None}  # i2i is not on the feed
    assert all(p["t"] == 50.0 and p["ctr_before"]["n"] > 0 for p in out["promotions"])
    assert "<svg" in render_loop_html(out) and "ranker r1" in render_loop_html(out)
