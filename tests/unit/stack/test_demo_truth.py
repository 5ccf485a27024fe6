"""The truth scores of shown feeds: the oracle is the best eligible feed, a random feed scores like the
random policy on average, seen items are not eligible, young items are compared among young items."""

from __future__ import annotations

import numpy as np
import pytest

from models.simulator import World, WorldConfig
from services.demo.truth import Truth, examination, feed_ctr, personalisation, summarise, summarise_young

NOW = 1.7e9


@pytest.fixture()
def world() -> World:
    return World(WorldConfig(n_users=5, n_items=300, seed=3, epoch=NOW))


def _truth(world: World) -> Truth:
    truth = Truth(world, young_s=600.0)
    truth.add((i, NOW - 86400.0) for i in world.item_ids)
    return truth


def test_feed_ctr_weights_positions_as_respond_examines_them():
    probs = np.array([0.4, 0.1, 0.0])
    w = examination(3)
    assert w[0] == 1.0 and w[1] == pytest.approx(1 / np.log2(3))
    assert feed_ctr(probs) == pytest.approx((0.4 + 0.1 * w[1]) / w.sum())
    assert feed_ctr(probs) > feed_ctr(probs[::-1].copy())  # the same items, best last, are worth less


def test_the_oracle_feed_captures_the_whole_gap_and_the_worst_feed_less_than_random(world: World):
    truth, user = _truth(world), world.user_ids[0]
    best = world.true_top_items(user, 10)
    m = truth.moment(user, best, NOW, 0.0, set(), cold=True)
    assert m is not None and m.ours == pytest.approx(m.oracle) and m.oracle > m.random
    probs = world.click_probs(user, world.item_ids)
    worst = [world.item_ids[int(j)] for j in np.argsort(probs)[:10]]
    low = truth.moment(user, worst, NOW, 0.0, set(), cold=True)
    assert low is not None and low.ours < low.random
    assert summarise([m])["gap"] == pytest.approx(1.0)


def test_random_feeds_score_like_the_random_policy_on_average(world: World):
    truth, user = _truth(world), world.user_ids[1]
    rng = np.random.default_rng(0)
    moments = [truth.moment(user, list(rng.choice(world.item_ids, 10, replace=False)), NOW, 0.0, set(), False)
               for _ in range(400)]
    s = summarise([m for m in moments if m is not None])
    assert s["lift"] == pytest.approx(1.0, abs=0.06)
    assert abs(s["gap"]) < 0.05  # type: ignore[arg-type]


def test_seen_items_are_not_eligible_for_the_oracle_or_the_random_policy(world: World):
    truth, user = _truth(world), world.user_ids[2]
    best = world.true_top_items(user, 11)
    fresh = truth.moment(user, best[:10], NOW, 0.0, set(), cold=False)
    after = truth.moment(user, best[:10], NOW, 0.0, {best[0]}, cold=False)
    assert fresh is not None and after is not None
    assert after.oracle < fresh.oracle  # the best item is gone from the oracle's feed
    top = world.click_probs(user, best[1:11])
    assert after.oracle == pytest.approx(feed_ctr(top))
    assert after.random < fresh.random  # ... and from the eligible mean (it was above it)
    assert (fresh.stale_slots, after.stale_slots) == (0, 1)  # a shown item the user already acted on


def test_young_items_are_compared_with_young_items(world: World):
    truth, user = _truth(world), world.user_ids[3]
    new = [u.item_id for u in world.add_items(20, NOW)]
    truth.add((i, NOW) for i in new)
    probs = world.click_probs(user, new)
    order = [new[int(j)] for j in np.argsort(-probs)]
    old = world.item_ids[:8]
    m = truth.moment(user, [*old, order[0], order[1]], NOW + 60.0, 60.0, set(), cold=False)
    assert m is not None and m.young is not None and m.young_slots == 2
    ours, rnd, orc = m.young
    assert ours == pytest.approx(orc) and rnd == pytest.approx(float(probs.mean()))
    later = truth.moment(user, [*old, order[0]], NOW + 601.0, 601.0, set(), cold=False)
    assert later is not None and later.young is None and later.young_slots == 0  # no longer young
    assert summarise_young([m, later])["n"] == 1


def test_personalisation_is_one_for_the_whole_catalogue(world: World):
    user = world.user_ids[4]
    got = personalisation(world, user, world.item_ids, world.item_ids)
    assert got is not None and got[0] == pytest.approx(got[1])
    top = personalisation(world, user, world.true_top_items(user, 10), world.item_ids)
    assert top is not None and top[0] / top[1] > 2.0
