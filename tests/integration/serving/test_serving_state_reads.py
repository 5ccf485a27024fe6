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

from core.errors import StoreUnavailable
from core.events import Interaction, ItemUpsert
from core.settings import Settings
from feature_store.online.pipelined import pack
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


def test_a_lists_sizes_reloaded_from_one_read_equal_their_own_reads(settings: Settings):
    """Past 3/4 of the TTL a list's sizes are reloaded together (one read at the largest size, each
    smaller one merged from its rows' prefixes): each equals a fresh store's read of that size."""
    now = time.time()
    seed_state(settings, _catalog(now), _by_device(now))
    state = RedisOnlineState(redis_client(settings), settings)
    ttl, sizes = settings.retrieval.shared_cache_ttl_s, (1, 2, 5, 12)
    for k in sizes:
        state.popular("phone", k, now)
        state.trending(None, k, now)
    late = [_ev(f"late{k}", i, now, device="phone") for k in range(9) for i in ("i7", "i9")]
    seed_state(settings, [], late)
    state.popular("phone", 2, now + 0.8 * ttl)  # starts the group's reload
    state.trending(None, 2, now + 0.8 * ttl)
    deadline = time.monotonic() + 10
    while state._lists._reloading and time.monotonic() < deadline:
        time.sleep(0.01)
    fresh = RedisOnlineState(redis_client(settings), settings)
    for k in sizes:
        assert state.popular("phone", k, now + 0.9 * ttl) == fresh.popular("phone", k, now + 0.8 * ttl)
        assert state.trending(None, k, now + 0.9 * ttl) == fresh.trending(None, k, now + 0.8 * ttl)
    assert [i for i, _ in fresh.popular("phone", 2, now)] == ["i7", "i9"]  # the reload saw the new clicks


class StubRows:
    """Feast's pipelined reader reduced to its shape: one HMGET per entity, decoded to a row."""

    def __init__(self, client: object) -> None:
        self.client = client

    def packed(self, join_key: str, ids: list[str]) -> bytes:
        return b"".join(pack("HMGET", f"stub:{join_key}:{i}", "v") for i in ids)

    def decoded(self, join_key: str, ids: list[str], replies: list[object], copy: bool = True) -> list[dict]:
        return [{join_key: i, "v": _text(r[0])} for i, r in zip(ids, replies, strict=True)]  # type: ignore[index]

    def user_features(self, user_id: str) -> dict:
        return {"user_id": user_id, "v": _text(self.client.hget(f"stub:user_id:{user_id}", "v"))}  # type: ignore[attr-defined]

    def item_features(self, item_ids: list[str]) -> list[dict]:
        return [{"item_id": i, "v": _text(self.client.hget(f"stub:item_id:{i}", "v"))}  # type: ignore[attr-defined]
                for i in item_ids]


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode()


def test_each_request_read_is_one_round_trip_equal_to_the_single_reads(settings: Settings):
    now = time.time()
    events = _by_device(now) + [_ev("co0", "i5", now - 300), _ev("co0", "i8", now - 240),
                                _ev("reader", "i0", now - 120), _ev("reader", "i5", now - 100)]
    seed_state(settings, _catalog(now), events)
    client = redis_client(settings)
    for entity, ids in (("user_id", ["reader", "t0"]), ("item_id", ITEMS[:5])):
        for i in ids:
            client.hset(f"stub:{entity}:{i}", "v", f"{entity}={i}")
    rows = StubRows(client)
    state, single = RedisOnlineState(client, settings), RedisOnlineState(redis_client(settings), settings)
    assert state.pipe is not None
    trips = []
    execute = state.pipe.execute
    state.pipe.execute = lambda *a, **k: trips.append(a[1]) or execute(*a, **k)  # type: ignore[method-assign]
    for user in ("reader", "t0", "p0", "nobody"):
        got, row, ok = state.read_user(user, rows)
        want = single.user(user)
        assert (got.recent, got.seen, got.n_interactions, got.segment, got.attributes, got.covisit) == \
               (want.recent, want.seen, want.n_interactions, want.segment, want.attributes, want.covisit)
        assert ok and row == rows.user_features(user)
    assert state.read_user("reader", rows)[0].covisit  # the script found the rows in the items' shards
    assert len(trips) == 5
    ids = ITEMS + ["missing"]
    for segment in (None, "tablet", "phone"):
        feast, pop, alpha, beta, ok = state.read_items(ids, segment, now, rows, also_counts=["i3", "zz"])
        assert ok and feast == rows.item_features(ids)
        np.testing.assert_array_equal(pop, single.item_popularity(ids, now))
        for x, y in zip((alpha, beta), single.posteriors(segment, ids), strict=True):
            np.testing.assert_array_equal(x, y)
    assert len(trips) == 8
    state.posteriors("tablet", ["i3", "zz"])  # fetched with the candidates: no trip, no redis-py call
    assert len(trips) == 8


def test_the_request_reads_fall_back_when_feast_cannot_be_read(settings: Settings):
    now = time.time()
    seed_state(settings, _catalog(now), _by_device(now))
    state = RedisOnlineState(redis_client(settings), settings)

    class Down:
        def user_features(self, user_id: str) -> dict:
            raise StoreUnavailable("feast down")

        def item_features(self, item_ids: list[str]) -> list[dict]:
            raise StoreUnavailable("feast down")

    user, row, ok = state.read_user("t0", Down())
    assert user.recent and row == {} and not ok
    feast, pop, _, _, ok = state.read_items(ITEMS, None, now, Down())
    assert feast == [{} for _ in ITEMS] and not ok and pop.max() > 0
    assert state.read_user("t0", None)[1:] == ({}, True)
