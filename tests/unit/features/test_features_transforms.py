"""Pure feature code: order independence (replay parity), windows, monotone row timestamps."""

from __future__ import annotations

import random

import pytest

from core.events import Interaction, ItemUpsert
from feature_store import transforms as tf

P = tf.TransformParams(history_len=5, affinity_half_life_s=3600.0, top_categories=3)
T0 = 1_800_000_000.0


def ev(k: int, ts: float, type_: str = "click", user: str = "u", item: str | None = None) -> Interaction:
    return Interaction(event_id=f"e{k}", user_id=user, item_id=item or f"i{k % 7}", type=type_, timestamp=ts)


def cats(item_id: str) -> list[str]:
    return [f"c{int(item_id[1:]) % 3}"]


def fold(events: list[Interaction]) -> tuple[tf.UserState, tf.ItemState]:
    us, it = tf.UserState("u"), tf.ItemState("i0")
    for e in events:
        tf.apply_user_event(us, e, cats(e.item_id), P)
        if e.item_id == "i0":
            tf.apply_item_event(it, e)
    return us, it


def stream(n: int = 60, seed: int = 1) -> list[Interaction]:
    rng = random.Random(seed)
    types = ["click", "impression", "impression", "like", "skip", "hide", "dwell"]
    return [ev(k, T0 + rng.uniform(0, 30 * 3600), rng.choice(types)) for k in range(n)]


def test_projections_do_not_depend_on_arrival_order():
    events = stream()
    shuffled = events[:]
    random.Random(7).shuffle(shuffled)
    (u1, i1), (u2, i2) = fold(sorted(events, key=lambda e: e.timestamp)), fold(shuffled)
    now = max(e.timestamp for e in events) + 10
    assert tf.project_user_realtime(u1, now) == tf.project_user_realtime(u2, now)
    a1, a2 = tf.project_user_affinity(u1, now, P), tf.project_user_affinity(u2, now, P)
    assert a1["affinity_categories"] == a2["affinity_categories"]
    assert a1["affinity_scores"] == pytest.approx(a2["affinity_scores"], rel=1e-9)
    assert tf.project_item_realtime(i1, now) == tf.project_item_realtime(i2, now)


def test_history_is_last_n_engaged_items_newest_first():
    events = [ev(k, T0 + k, "impression" if k % 2 else "click", item=f"i{k}") for k in range(20)]
    us, _ = fold(events)
    row = tf.project_user_realtime(us)
    assert row["recent_items"] == ["i18", "i16", "i14", "i12", "i10"]
    assert row["history_len"] == 5 and row["last_event_ts"] == T0 + 19


def test_affinity_decays_with_half_life():
    us = tf.apply_user_event(tf.UserState("u"), ev(1, T0, "click", item="i1"), ["jazz"], P)
    row = tf.project_user_affinity(us, T0 + 3600, P)
    assert row["affinity_categories"] == ["jazz"]
    assert row["affinity_scores"] == [pytest.approx(0.5)]


def test_item_windows_and_ctr():
    it = tf.ItemState("i0")
    tf.apply_item_upsert(it, ItemUpsert(item_id="i0", created_at=T0 - 100, timestamp=T0 - 50))
    for k, (dt, typ) in enumerate([(0, "impression"), (10, "impression"), (20, "click"),
                                   (2 * 3600, "impression"), (2 * 3600 + 5, "click")]):
        tf.apply_item_event(it, ev(k, T0 + dt, typ, item="i0"))
    row = tf.project_item_realtime(it)
    assert (row["impressions_1h"], row["clicks_1h"], row["ctr_1h"]) == (1, 1, 1.0)
    assert (row["impressions_24h"], row["clicks_24h"]) == (3, 2)
    assert row["ctr_24h"] == pytest.approx(2 / 3)
    assert row["item_age_s"] == pytest.approx(2 * 3600 + 5 + 100)
    late = tf.project_item_realtime(it, T0 + 30 * 3600)
    assert late["impressions_24h"] == 0 and late["item_age_s"] == pytest.approx(30 * 3600 + 100)


def test_row_timestamps_strictly_increase_even_for_late_events():
    us = tf.UserState("u")
    stamps = []
    for k, ts in enumerate([T0 + 10, T0 + 10, T0 + 5, T0 + 20]):
        tf.apply_user_event(us, ev(k, ts), ["c"], P)
        stamps.append(tf.project_user_realtime(us)["event_timestamp"])
    assert all(a < b for a, b in zip(stamps, stamps[1:], strict=False))
    assert stamps[-1].timestamp() == pytest.approx(T0 + 20)


def test_state_json_roundtrip():
    us, it = fold(stream(30))
    assert tf.loads_user(tf.dumps_user(us), "u") == us
    assert tf.loads_item(tf.dumps_item(it), "i0") == it
    assert tf.loads_user(None, "x") == tf.UserState("x")
