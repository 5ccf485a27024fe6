"""The serving state's per-item columns (``feature_store.online.item_columns``) on a real redis-server:
a candidate's Feast row and popularity are read from Redis at most once per
``retrieval.item_state_max_age_s``, equal to a fresh read once that has passed, and a deletion the
eraser announces makes the next request read the item again at once. The process clock is a fake one
the tests move (no sleeping, no timing)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest
from serving_helpers import seed_state
from test_serving_state_reads import ITEMS, StubRows, _catalog, _ev

from core.settings import Settings
from feature_store.online import redis_state
from feature_store.online.redis_state import RedisOnlineState, redis_client


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def monotonic(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(redis_state, "time", SimpleNamespace(monotonic=fake.monotonic, time=time.time))
    return fake


def _with_age(settings: Settings, max_age_s: float) -> Settings:
    return settings.model_copy(update={"retrieval": settings.retrieval.model_copy(
        update={"item_state_max_age_s": max_age_s, "shared_cache_ttl_s": 1.0})})


def _state(settings: Settings, trips: list[int]) -> tuple[RedisOnlineState, StubRows]:
    client = redis_client(settings)
    for i in ITEMS:
        client.hset(f"stub:item_id:{i}", "v", "old")
    state = RedisOnlineState(client, settings)
    assert state.pipe is not None
    execute = state.pipe.execute
    state.pipe.execute = lambda *a, **k: trips.append(a[1]) or execute(*a, **k)  # type: ignore[method-assign]
    return state, StubRows(client)


def _fresh(settings: Settings, rows: StubRows, now: float) -> tuple[list[dict], np.ndarray]:
    single = RedisOnlineState(redis_client(settings), settings)
    return rows.item_features(ITEMS), single.item_popularity(ITEMS, now)


def test_item_rows_and_popularity_are_read_once_per_max_age(settings: Settings, clock: FakeClock):
    settings = _with_age(settings, 2.0)
    now = time.time()
    seed_state(settings, _catalog(now), [_ev(f"u{k}", "i0", now - 60) for k in range(3)])
    trips: list[int] = []
    state, rows = _state(settings, trips)
    first = state.read_items(ITEMS, None, now, rows)
    assert len(trips) == 1 and first[0] == rows.item_features(ITEMS)
    np.testing.assert_array_equal(first[1], _fresh(settings, rows, now)[1])

    redis_client(settings).hset("stub:item_id:i0", "v", "new")  # Feast's row and popularity change
    seed_state(settings, [], [_ev(f"v{k}", "i0", now - 30) for k in range(5)])
    clock.t += 0.5  # within the max age (and the counts' TTL): nothing is read, the kept values serve
    kept = state.read_items(ITEMS, None, now, rows)
    assert len(trips) == 1
    assert kept[0] == first[0] and kept[0][0]["v"] == "old"
    np.testing.assert_array_equal(kept[1], first[1])

    clock.t += 2.0  # past it: read again, equal to fresh reads
    later = state.read_items(ITEMS, None, now, rows)
    assert len(trips) == 2
    feast, popularity = _fresh(settings, rows, now)
    assert later[0] == feast and later[0][0]["v"] == "new"
    np.testing.assert_array_equal(later[1], popularity)
    assert later[1][0] > first[1][0]


def test_only_the_stale_candidates_are_read(settings: Settings, clock: FakeClock):
    settings = _with_age(settings, 2.0)
    now = time.time()
    seed_state(settings, _catalog(now), [_ev("u0", "i3", now - 60)])
    trips: list[int] = []
    state, rows = _state(settings, trips)
    state.read_items(ITEMS[:6], None, now, rows)
    redis_client(settings).hset("stub:item_id:i8", "v", "new")
    clock.t += 0.5
    got = state.read_items(ITEMS, None, now, rows)  # i6..i11 are new to the columns
    # the 6 new ones only: ZMSCORE in each popularity epoch and HMGET of bandit counts (one per slice),
    # their 6 Feast rows
    assert trips[-1] == 3 * len(redis_state._by_slice(ITEMS[6:])) + 6
    assert got[0] == rows.item_features(ITEMS) and got[0][8]["v"] == "new"
    np.testing.assert_array_equal(got[1], _fresh(settings, rows, now)[1])


def _read_once(settings: Settings, max_age_s: float) -> tuple[Settings, RedisOnlineState, StubRows,
                                                                list[int], float]:
    """A seeded catalog without events, read once through a state with columns of ``max_age_s``."""
    settings = _with_age(settings, max_age_s)
    now = time.time()
    seed_state(settings, _catalog(now), [])
    trips: list[int] = []
    state, rows = _state(settings, trips)
    state.read_items(ITEMS, None, now, rows)
    return settings, state, rows, trips, now


def test_a_deleted_item_is_read_again_at_once(settings: Settings, clock: FakeClock):
    settings, state, rows, trips, now = _read_once(settings, 30.0)
    client = redis_client(settings)
    client.hset("stub:item_id:i1", "v", "erased")
    client.hset("stub:item_id:i2", "v", "changed")
    state.forget_items(["i1"])
    clock.t += 0.1
    got = state.read_items(ITEMS, None, now, rows)[0]
    assert len(trips) == 2 and trips[-1] == 2 + 1  # only i1: its score in two epochs, its row
    assert got[1]["v"] == "erased" and got[2]["v"] == "old"


def test_max_age_zero_reads_every_request(settings: Settings, clock: FakeClock):
    settings, state, rows, trips, now = _read_once(settings, 0.0)
    redis_client(settings).hset("stub:item_id:i4", "v", "new")
    got = state.read_items(ITEMS, None, now, rows)
    assert len(trips) == 2 and got[0] == rows.item_features(ITEMS) and got[0][4]["v"] == "new"


def test_bandit_counts_are_kept_per_segment_for_the_ttl_then_equal_a_fresh_read(settings: Settings,
                                                                               clock: FakeClock) -> None:
    """The per-segment count columns: a count written meanwhile is not seen before
    ``shared_cache_ttl_s`` (1 s here) has passed, then the posteriors equal a fresh state's, on both
    read paths (the request's pipelined ``read_items`` and ``posteriors``); another segment's columns
    are its own."""
    settings = _with_age(settings, 2.0)
    now = time.time()
    seed_state(settings, _catalog(now), [_ev("u0", "i3", now - 60)])
    trips: list[int] = []
    state, rows = _state(settings, trips)
    before = state.read_items(ITEMS, None, now, rows)[2:4]
    tablet = state.posteriors("tablet", ITEMS)
    client = redis_client(settings)
    key = state.keys.bandit("all", redis_state.pop_slice("i3"))
    client.hincrby(key, "i3:i", 5)
    client.hincrby(key, "i3:c", 2)
    clock.t += 0.5
    for got in (state.read_items(ITEMS, None, now, rows)[2:4], state.posteriors(None, ITEMS)):
        np.testing.assert_array_equal(got[0], before[0])
        np.testing.assert_array_equal(got[1], before[1])
    clock.t += 1.0
    fresh = RedisOnlineState(redis_client(settings), settings).posteriors(None, ITEMS)
    after = state.read_items(ITEMS, None, now, rows)[2:4]
    for got in (after, state.posteriors(None, ITEMS)):
        np.testing.assert_array_equal(got[0], fresh[0])
        np.testing.assert_array_equal(got[1], fresh[1])
    j = ITEMS.index("i3")
    assert after[0][j] == before[0][j] + 2 and after[1][j] == before[1][j] + 3
    np.testing.assert_array_equal(state.posteriors("tablet", ITEMS)[0], tablet[0])
