"""The serving side of the Redis state (``RedisOnlineState``) on a real redis-server written by the worker's
writer, beyond what the contract test with the in-process store covers (that test,
tests/integration/features/test_features_memory_contract.py, holds every read equal to ``MemoryOnline``
on the same events, so a wrong answer shared by both would pass it): segment names reach the keys the
worker writes, the one-round-trip user read equals the separate reads it stands for, and the lists
shared by every user are cached by request time."""

from __future__ import annotations

import itertools
import time

import numpy as np
from serving_helpers import seed_state

from core.events import Interaction, ItemUpsert
from core.settings import Settings
from feature_store.online.redis_state import RedisOnlineState, redis_client

ITEMS = [f"i{j}" for j in range(12)]
_ids = itertools.count()


def _catalog(now: float) -> list[ItemUpsert]:
    return [ItemUpsert(item_id=i, categories=[f"c{j % 3}"], created_at=now - 86400 * (j + 1))
            for j, i in enumerate(ITEMS)]


def _ev(user: str, item: str, ts: float, kind: str = "click", device: str = "", **attribution: object
        ) -> Interaction:
    return Interaction(event_id=f"e{next(_ids)}", user_id=user, item_id=item, type=kind, timestamp=ts,  # type: ignore[arg-type]
                       context={"device": device} if device else {}, **attribution)  # type: ignore[arg-type]


def _by_device(now: float) -> list[Interaction]:
    """Tablet users click i0..i3 (2, 4, 6, 8 times); phone users click i4..i11 (16 down to 9 times);
    then one tablet user is shown i0, i1 and clicks i0, and one phone user is shown i0."""
    out = [_ev(f"t-{i}-{k}", i, now - 60, device="tablet") for j, i in enumerate(ITEMS[:4])
           for k in range(2 * (j + 1))]
    out += [_ev(f"p-{i}-{k}", i, now - 60, device="phone") for j, i in enumerate(ITEMS[4:])
            for k in range(16 - j)]
    shown = {"feed_id": "f-t", "propensity": 1.0}
    out += [_ev("t0", "i0", now - 30, "impression", "tablet", position=0, **shown),
            _ev("t0", "i1", now - 30, "impression", "tablet", position=1, **shown),
            _ev("t0", "i0", now - 20, "click", "tablet", position=0, **shown),
            _ev("p0", "i0", now - 30, "impression", "phone", feed_id="f-p", position=0, propensity=1.0)]
    return out


def test_segments_read_the_keys_the_worker_writes(settings: Settings):
    now = time.time()
    seed_state(settings, _catalog(now), _by_device(now))
    state = RedisOnlineState(redis_client(settings), settings)
    assert [i for i, _ in state.popular("tablet", 10, now)] == ["i3", "i2", "i1", "i0"]
    assert [i for i, _ in state.popular("phone", 3, now)] == ["i4", "i5", "i6"]
    assert [i for i, _ in state.trending("device:tablet", 2, now)] == ["i3", "i2"]
    overall = state.popular(None, 12, now)
    assert [i for i, _ in overall][:2] == ["i4", "i5"] and len(overall) == 12
    assert state.popular("watch", 12, now) == overall  # a segment without data falls back to everyone
    assert [i for i, _ in state.popular("cat:c0", 10, now)] == ["i6", "i9", "i3", "i0"]
    tablet, phone, everyone = (state.posteriors(s, ["i0", "i1"]) for s in ("tablet", "phone", None))
    prior_a, prior_b = settings.bandit.prior_alpha, settings.bandit.prior_beta
    np.testing.assert_array_equal(tablet[0], [prior_a + 1, prior_a])  # the attributed click
    np.testing.assert_array_equal(tablet[1], [prior_b, prior_b + 1])
    np.testing.assert_array_equal(phone[1], [prior_b + 1, prior_b])  # shown, not clicked
    np.testing.assert_array_equal(everyone[1], [prior_b + 1, prior_b + 1])


def test_the_one_round_trip_user_read_equals_the_separate_reads(settings: Settings):
    now = time.time()
    events = [_ev(f"co{k}", "i5", now - 300) for k in range(3)]
    events += [_ev(f"co{k}", other, now - 240) for k in range(3) for other in ("i8", "i9")]
    events += [_ev("reader", i, now - 120 + j) for j, i in enumerate(("i0", "i5", "i7"))]
    seed_state(settings, _catalog(now), events)
    state = RedisOnlineState(redis_client(settings), settings)
    user = state.user("reader")
    assert user.recent == ["i7", "i5", "i0"] and user.seen == {"i0", "i5", "i7"} and user.n_interactions == 3
    assert user.covisit == state.covisit(user.recent[:10], settings.retrieval.covisit)
    assert {"i8", "i9"} <= {i for i, _ in user.covisit or []}
    assert state.user("nobody").recent == [] and state.user("nobody").covisit == []


def test_shared_lists_are_cached_for_a_ttl_of_request_time(settings: Settings):
    now = time.time()
    seed_state(settings, _catalog(now), _by_device(now))
    state = RedisOnlineState(redis_client(settings), settings)
    ttl = settings.retrieval.shared_cache_ttl_s
    before = state.popular(None, 3, now)
    seed_state(settings, [], [_ev(f"late{k}", "i11", now) for k in range(40)])
    assert state.popular(None, 3, now + ttl / 2) == before  # same list for every request within the TTL
    assert state.popular(None, 3, now + ttl + 0.01)[0][0] == "i11"
    other = RedisOnlineState(redis_client(settings), settings)
    assert other.popular(None, 3, now + 5.0)[0][0] == "i11"
    seed_state(settings, [], [_ev(f"later{k}", "i10", now) for k in range(80)])
    assert other.popular(None, 3, now)[0][0] == "i10"  # an earlier request time never reuses a later read
