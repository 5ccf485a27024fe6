"""The synthetic world: seeded, clicks follow the hidden preferences, drift moves them."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from core.events import Interaction, InteractionType, ItemUpsert, decode_interaction, encode
from models.simulator import World, WorldConfig

SMALL = WorldConfig(n_users=60, n_items=150, n_categories=6, dim=8, seed=3)


def _dump(events: list[Interaction]) -> list[str]:
    return [e.model_dump_json() for e in events]


def test_same_seed_same_world_and_traffic():
    a, b = World(SMALL), World(SMALL)
    assert [i.model_dump() for i in a.item_upserts()] == [i.model_dump() for i in b.item_upserts()]
    assert _dump(list(a.traffic(300, 1.7e9, 100))) == _dump(list(b.traffic(300, 1.7e9, 100)))
    c = World(WorldConfig(n_users=60, n_items=150, n_categories=6, dim=8, seed=4))
    assert _dump(list(World(SMALL).traffic(300, 1.7e9, 100))) != _dump(list(c.traffic(300, 1.7e9, 100)))


def test_traffic_is_valid_unique_and_timed():
    world = World(SMALL)
    events = list(world.traffic(500, 1.7e9, 50.0))
    assert len(events) == 500
    assert len({e.event_id for e in events}) == 500
    assert all(decode_interaction(encode(e)) == e for e in events[:20])
    assert events[-1].timestamp == pytest.approx(1.7e9 + 499 / 50.0)
    assert {e.context["device"] for e in events} <= {"mobile", "desktop", "tablet"}
    kinds = Counter(e.type for e in events)
    assert kinds[InteractionType.IMPRESSION] > kinds[InteractionType.CLICK] > 0
    more = list(world.traffic(10, 1.8e9, 1.0))
    assert not {e.event_id for e in more} & {e.event_id for e in events}


def test_item_text_carries_category_words():
    world = World(SMALL)
    item = world.item_upserts()[0]
    assert item.categories and item.categories[0] in world.categories
    assert item.title and item.title.lower() in item.text.lower()
    assert item.created_at <= item.timestamp


def test_clicks_follow_hidden_preferences():
    world = World(WorldConfig(n_users=80, n_items=200, n_categories=6, dim=8, seed=5))
    shown = Counter[tuple[str, str]]()
    clicked = Counter[tuple[str, str]]()
    for ev in world.traffic(20000, 1.7e9, 1000.0):
        key = (ev.user_id, world.item_categories(ev.item_id)[0])
        if ev.type is InteractionType.IMPRESSION:
            shown[key] += 1
        elif ev.type is InteractionType.CLICK:
            clicked[key] += 1
    taste = np.array([world.taste(u)[c] for (u, c) in shown])
    ctr = np.array([clicked[k] / shown[k] for k in shown])
    liked, disliked = ctr[taste > 0.3].mean(), ctr[taste < 0.05].mean()
    assert liked > 2 * disliked


def test_true_top_items_have_highest_click_prob_and_respond_attributes():
    world = World(SMALL)
    user = world.user_ids[0]
    top = world.true_top_items(user, 5)
    probs = [world.click_prob(user, i) for i in world.item_ids]
    assert world.click_prob(user, top[0]) == pytest.approx(max(probs))
    assert np.mean([world.click_prob(user, i) for i in top]) > 3 * np.mean(probs)
    events = world.respond(user, top, 1.7e9, feed_id="f1", propensities=[0.5] * 5)
    impressions = [e for e in events if e.type is InteractionType.IMPRESSION]
    assert [e.position for e in impressions] == list(range(5))
    assert all(e.feed_id == "f1" and e.propensity == 0.5 for e in events)


def test_respond_clicks_top_items_more_than_bottom_items():
    world = World(SMALL)
    user = world.user_ids[1]
    ranked = world.true_top_items(user, len(world.item_ids))
    def clicks(items: list[str]) -> int:
        return sum(e.type is InteractionType.CLICK for _ in range(200)
                   for e in world.respond(user, items, 1.7e9))
    assert clicks(ranked[:3]) > 3 * clicks(ranked[-3:])


def test_shift_preferences_changes_truth():
    world = World(SMALL)
    user = world.user_ids[2]
    before = world.click_probs(user, world.item_ids)
    world.shift_preferences(0.0, seed=1)
    assert np.allclose(before, world.click_probs(user, world.item_ids))
    world.shift_preferences(0.9, seed=1)
    after = world.click_probs(user, world.item_ids)
    assert np.corrcoef(before, after)[0, 1] < 0.8


def test_new_items_arrive_and_get_traffic():
    world = World(WorldConfig(n_users=30, n_items=40, n_categories=4, dim=8, seed=2, new_item_rate=2.0))
    fresh = world.add_items(3, now=1.7e9 + 5)
    assert [i.created_at for i in fresh] == [1.7e9 + 5] * 3
    assert len(world.item_ids) == 43
    mixed = list(world.stream(2000, 1.7e9 + 10, 100.0))
    new_items = [e for e in mixed if isinstance(e, ItemUpsert)]
    assert 20 <= len(new_items) <= 70  # ~2/s over ~20 simulated seconds
    new_ids = {i.item_id for i in new_items}
    assert any(isinstance(e, Interaction) and e.item_id in new_ids for e in mixed)
