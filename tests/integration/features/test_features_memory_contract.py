"""The in-process online store equals the Redis one on the same events.

Events go to a real redis-server through the stream worker's own writer (``OnlineWriter``, the Lua
script and pipeline), and to ``MemoryOnline`` through the same batch planning. Then: the key spaces are
equal, key by key, and every read of ``core.online.OnlineState`` (and the Feast stream-view rows the
worker pushes) answers the same on both. This is what lets ``streamrec eval`` and the training job
replay events in process and still score the funnel that serves.

Both on one redis-server and on a local three-master Redis Cluster (``redis+cluster://``): the same
plans, one script per hash tag there, the same reads through the cluster client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence

import numpy as np
import pytest
import redis

from core.events import Interaction, ItemUpsert, UserUpsert
from core.settings import Settings
from feature_store import transforms as tf
from feature_store.online import resp
from feature_store.online.batch import effect_params
from feature_store.online.keys import Keys
from feature_store.online.memory_state import MemoryOnline, vectors_as_bytes
from feature_store.online.redis_state import RedisOnlineState, redis_client
from feature_store.online.writer import OnlineWriter, StatsDelta
from models.simulator import World, WorldConfig
from services.local_cluster import local_cluster

BATCH = 97


def _world() -> tuple[World, list[ItemUpsert], list[UserUpsert], list[Interaction]]:
    world = World(WorldConfig(n_users=40, n_items=120, seed=3))
    items, users = world.item_upserts(), world.user_upserts()
    events = list(world.traffic(1500, start_ts=world.config.epoch, rate_per_s=5.0))
    ts = events[-1].timestamp
    for n, user in enumerate(world.user_ids[:10]):  # feeds shown and clicked: bandit + impression effects
        shown = world.true_top_items(user, 5)
        events += world.respond(user, shown, ts + 10 + n, feed_id=f"f{n}", propensities=[0.5] * 5)
    return world, items, users, events


def _vectors(items: Sequence[ItemUpsert]) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    return vectors_as_bytes([it.item_id for it in items], rng.standard_normal((len(items), 8)))


def _seed_redis(settings: Settings, items: list[ItemUpsert], users: list[UserUpsert],
                events: list[Interaction], vectors: dict[str, bytes]) -> None:
    async def run() -> None:
        r = resp.connect(settings.redis.url or "", 1.0, 10.0)
        w = OnlineWriter(r, Keys(settings.redis.key_prefix), effect_params(settings), 3600,
                         tf.TransformParams.from_settings(settings))
        await w.apply_items([(None, it) for it in items], vectors, {}, {}, StatsDelta("items"))
        await w.apply_users(users, {}, {}, StatsDelta("users"))
        for start in range(0, len(events), BATCH):
            await w.apply_interactions([(None, e) for e in events[start:start + BATCH]], {}, {},
                                       StatsDelta("interactions"))
        await r.close()

    asyncio.run(run())


def _seed_memory(settings: Settings, items: list[ItemUpsert], users: list[UserUpsert],
                 events: list[Interaction], vectors: dict[str, bytes]) -> MemoryOnline:
    mem = MemoryOnline(settings)
    mem.apply_items(items, vectors)
    mem.apply_users(users)
    for start in range(0, len(events), BATCH):
        mem.apply_interactions(events[start:start + BATCH])
    return mem


def _redis_keyspace(client: redis.Redis, prefix: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for raw in client.scan_iter(match=f"{prefix}*", count=1000):
        key = raw.decode()
        kind = client.type(raw).decode()
        if kind == "zset":
            out[key] = {m.decode(): s for m, s in client.zrange(raw, 0, -1, withscores=True)}
        elif kind == "hash":
            out[key] = {f.decode(): v.decode() for f, v in client.hgetall(raw).items()}
        elif kind == "list":
            out[key] = [v.decode() for v in client.lrange(raw, 0, -1)]
        elif kind == "set":
            out[key] = {v.decode() for v in client.smembers(raw)}
        else:
            value = client.get(raw)
            binary = (":vec:", ":fs:user:")  # float32 vectors, binary user states
            out[key] = value if any(b in key for b in binary) else (value or b"").decode()
    return out


def _memory_keyspace(mem: MemoryOnline) -> dict[str, object]:
    kv = mem.kv
    return {**{k: v for k, v in kv.z.items() if v}, **{k: v for k, v in kv.h.items() if v},
            **{k: v for k, v in kv.l.items() if v}, **{k: v for k, v in kv.s.items() if v}, **kv.v}


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with local_cluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster.url


@pytest.fixture(params=["redis", "cluster"])
def online(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    if request.param == "redis":
        return settings
    url = request.getfixturevalue("cluster_url")
    return settings.model_copy(update={"redis": settings.redis.model_copy(update={"url": url})})


@pytest.fixture
def stores(online: Settings) -> tuple[RedisOnlineState, MemoryOnline, World, list[Interaction]]:
    # A small co-visitation cap, so the order-dependent trimming is exercised on both sides.
    settings = online.model_copy(update={"worker": online.worker.model_copy(update={"covisit_cap": 4})})
    world, items, users, events = _world()
    vectors = _vectors(items)
    _seed_redis(settings, items, users, events, vectors)
    mem = _seed_memory(settings, items, users, events, vectors)
    return RedisOnlineState(redis_client(settings), settings), mem, world, events


def test_key_spaces_are_equal(stores, settings: Settings):
    real, mem, _, _ = stores
    prefix = settings.redis.key_prefix
    theirs = {k: v for k, v in _redis_keyspace(real.r, prefix).items()
              if not any(x in k for x in (":dd:", ":off", ":stats", ":aw"))}
    mine = _memory_keyspace(mem)
    covisit = [v for k, v in mine.items() if ":cv:" in k]
    assert covisit and max(len(v) for v in covisit) == 4  # type: ignore[arg-type]  # trimmed at the cap
    assert sorted(theirs) == sorted(mine)
    for key in theirs:
        assert theirs[key] == mine[key], key


def test_every_read_answers_the_same(stores):
    real, mem, world, events = stores
    now = events[-1].timestamp + 60
    for segment in (None, "mobile", "desktop", f"cat:{world.categories[0]}"):
        assert real.popular(segment, 25, now) == mem.popular(segment, 25, now)
        assert real.trending(segment, 25, now) == mem.trending(segment, 25, now)
    for user in world.user_ids + ["nobody"]:
        a, b = real.user(user), mem.user(user)
        assert (a.recent, a.seen, a.n_interactions, a.segment, a.attributes, a.covisit) == \
               (b.recent, b.seen, b.n_interactions, b.segment, b.attributes, b.covisit)
        assert real.covisit(a.recent[:5], 30) == mem.covisit(b.recent[:5], 30)
        assert mem.user_features(user) == _project_user(real, user)
    ids = world.item_ids[:60] + ["missing"]
    assert real.fresh(20) == mem.fresh(20)
    for x, y in zip(real.items(ids), mem.items(ids), strict=True):
        assert (x is None) == (y is None)
        if x is not None and y is not None:
            assert (x.categories, x.created_at, x.active, x.attributes) == \
                   (y.categories, y.created_at, y.active, y.attributes)
            np.testing.assert_array_equal(x.vector, y.vector)
    np.testing.assert_array_equal(real.item_popularity(ids, now), mem.item_popularity(ids, now))
    for segment in (None, "mobile"):
        for x, y in zip(real.posteriors(segment, ids), mem.posteriors(segment, ids), strict=True):
            np.testing.assert_array_equal(x, y)
    assert mem.posteriors(None, ids)[0].max() > 1.0  # the attributed clicks were counted


def _project_user(real: RedisOnlineState, user: str) -> dict[str, object]:
    raw = real.r.get(real.keys.user_features(user))
    row: dict[str, object] = {"user_id": user, "recent_items": None, "history_len": None,
                              "last_event_ts": None, "affinity_categories": None, "affinity_scores": None}
    if raw:
        st = tf.loads_user(raw, user)
        params = tf.TransformParams.from_settings(real.settings)
        for part in (tf.project_user_realtime(st), tf.project_user_affinity(st, params=params)):
            row.update({k: v for k, v in part.items() if k not in ("user_id", "event_timestamp")})
    return row
