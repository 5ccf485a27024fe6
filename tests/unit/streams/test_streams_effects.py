"""Pure effect planning: popularity decay, co-visitation, bandit attribution, history."""

from __future__ import annotations

import numpy as np
import pytest

from core.events import Interaction
from feature_store.online import decay
from feature_store.online.bandit_effects import context_indices, context_vector, linear_stats
from feature_store.online.effects import EffectParams, UserState, decode_history, plan_interactions
from feature_store.online.keys import Keys, pop_slice

K = Keys("t:")
P = EffectParams(covisit_window_s=100.0)
T0 = 1_700_000_000.0


def ev(n: int, user: str, item: str, typ: str = "click", ts: float = T0, **kw: object) -> Interaction:
    return Interaction(event_id=f"e{n}", user_id=user, item_id=item, type=typ, timestamp=ts, **kw)


def test_decay_is_order_independent_and_halves_per_half_life() -> None:
    hl = 60.0
    a, b = decay.grow(1.0, T0, hl), decay.grow(2.0, T0 + 30, hl)
    e = decay.epoch_of(T0, hl)
    assert decay.epoch_of(T0 + 30, hl) == e
    assert decay.decayed(a + b, e, T0 + 90, hl) == pytest.approx(2 ** -1.5 + 2 * 2 ** -1.0)


def test_popularity_goes_to_global_category_and_context_segments() -> None:
    plan = plan_interactions([ev(1, "u", "i1", context={"device": "ios"})], {}, {"i1": ["jazz"]}, P, K)
    keys = {k.rsplit(":", 1)[-1] for k in plan.zincr if ":pop:pop:" in k}
    assert keys == {"all", "jazz", "ios"}
    assert any(k.endswith(":cat:jazz") for k in plan.zincr)


def test_impressions_do_not_count_for_popularity_but_for_bandit() -> None:
    plan = plan_interactions([ev(1, "u", "i1", "impression", feed_id="f", position=3)], {}, {}, P, K)
    assert not [k for k in plan.zincr if ":pop:" in k]
    assert plan.hincr[K.bandit("all", pop_slice("i1"))]["i1:i"] == 1
    assert plan.hset[K.impressions("u")]["f:3"].startswith("i1\t")


def test_click_is_attributed_once_through_feed_id_and_position() -> None:
    events = [ev(1, "u", "i1", "impression", feed_id="f", position=0, context={"device": "ios"}),
              ev(2, "u", "i1", "click", ts=T0 + 1, feed_id="f", position=0),
              ev(3, "u", "i1", "click", ts=T0 + 2, feed_id="f", position=0),
              ev(4, "u", "i2", "click", ts=T0 + 3, feed_id="f", position=0)]
    plan = plan_interactions(events, {}, {}, P, K)
    assert plan.hincr[K.bandit("all", pop_slice("i1"))]["i1:c"] == 1
    assert plan.hincr[K.bandit("device:ios", pop_slice("i1"))]["i1:c"] == 1
    assert "i2:c" not in plan.hincr[K.bandit("all", pop_slice("i2"))]
    assert plan.hset[K.impressions("u")]["f:0"].endswith("\t1")


def test_click_attributes_to_impression_from_an_earlier_batch() -> None:
    state = {"u": UserState([], {"f:1": "i9\tandroid\t0"})}
    plan = plan_interactions([ev(1, "u", "i9", "click", feed_id="f", position=1)], state, {}, P, K)
    assert plan.hincr[K.bandit("device:android", pop_slice("i9"))]["i9:c"] == 1
    idx = context_indices({"device": "android"}, "device", 8)
    assert plan.hincr[K.linear("i9")][f"c:{idx[1]}"] == 1


def test_covisitation_pairs_within_window_forward_by_distance_and_weaker_backward() -> None:
    p = EffectParams(covisit_window_s=100.0, covisit_backward=0.3)
    events = [ev(1, "u", "a"), ev(2, "u", "b", ts=T0 + 10), ev(3, "u", "c", ts=T0 + 20),
              ev(4, "u", "d", ts=T0 + 500)]
    plan = plan_interactions(events, {}, {}, p, K)
    assert plan.zincr[K.covisit("a")]["b"] == 1 and plan.zincr[K.covisit("b")]["a"] == 0.3
    assert plan.zincr[K.covisit("a")]["c"] == 0.5 and plan.zincr[K.covisit("c")]["a"] == 0.15  # 2 apart
    assert "d" not in plan.zincr[K.covisit("c")] and "c" not in plan.zincr[K.covisit("d")]  # outside
    assert decode_history(plan.lpush[K.history("u")])[-1] == ("d", T0 + 500)


def test_history_continues_from_the_stored_state_and_is_capped() -> None:
    p = EffectParams(history_len=3)
    state = {"u": UserState([("x", T0 - 5), ("y", T0 - 6), ("z", T0 - 7)], {})}
    plan = plan_interactions([ev(1, "u", "a"), ev(2, "u", "b", ts=T0 + 1)], state, {}, p, K)
    assert [i for i, _ in decode_history(plan.lpush[K.history("u")])] == ["a", "b"]  # LPUSH order
    assert plan.ltrim[K.history("u")] == 3
    assert plan.sadd[K.seen("u")] == {"a", "b"}


def test_linear_bandit_counts_give_back_its_sufficient_statistics() -> None:
    """A = sum x x^T over impressions and b = sum r x over attributed clicks, x the one-hot context."""
    devices = ["ios", "android", None, "web", "ios"]
    events, clicks = [], []
    for n, d in enumerate(devices * 3):
        ctx = {"device": d} if d else {}
        events.append(ev(2 * n, "u", "i1", "impression", ts=T0 + 2 * n, feed_id="f", position=n, context=ctx))
        if n % 2 == 0:
            events.append(ev(2 * n + 1, "u", "i1", "click", ts=T0 + 2 * n + 1, feed_id="f", position=n))
            clicks.append(ctx)
    plan = plan_interactions(events, {}, {}, P, K)
    a, b = linear_stats({f: str(v) for f, v in plan.hincr[K.linear("i1")].items()}, 8)
    want_a = np.zeros((8, 8))
    want_b = np.zeros(8)
    for e in events:
        if e.type == "impression":
            x = np.array(context_vector(e.context, "device", 8))
            want_a += np.outer(x, x)
    for ctx in clicks:
        want_b += np.array(context_vector(ctx, "device", 8))
    np.testing.assert_array_equal(np.array(a), want_a)
    np.testing.assert_array_equal(np.array(b), want_b)
