"""Helpers for the stream-worker integration tests: a real worker subprocess on the real broker/Redis,
a deterministic event generator, and a comparison of two key prefixes in Redis (worker vs reference)."""

from __future__ import annotations

import asyncio
import math
import random
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from core.events import Interaction, ItemUpsert
from core.settings import Settings, load_settings
from core.topics import Topics
from feature_store import transforms as tf
from feature_store.online import resp
from feature_store.online.batch import effect_params
from feature_store.online.item_merge import item_state
from feature_store.online.keys import Keys
from feature_store.online.redis_state import redis_client
from feature_store.online.writer import OnlineWriter, StatsDelta
from feature_store.transforms import TransformParams
from iokit import ChildProcess, free_port, spawn
from streams.content import vectors

ROOT = Path(__file__).resolve().parents[3]
DEVICES = ("ios", "android", "web")
CATS = ("jazz", "rock", "news", "sport", "food")


def make_settings(tmp: Path, bootstrap: str, redis_url: str, **worker: Any) -> Settings:
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    return load_settings(
        data_dir=str(tmp), kafka={"bootstrap_servers": bootstrap, "topic_prefix": prefix, "partitions": 4},
        redis={"url": redis_url, "key_prefix": f"sr:{prefix}"}, feast={"project": prefix.rstrip("-")},
        worker={"group_id": f"g-{prefix}", "session_timeout_s": 2.0, "rebalance_timeout_s": 1.0,
                "commit_interval_s": 0.5, "batch_size": 500, "content_model": False,
                "feature_push": False, "metrics_port": free_port(), "covisit_cap": 10_000, **worker})


def worker_env(s: Settings) -> dict[str, str]:
    w = s.worker
    env = {"STREAMREC_DATA_DIR": str(s.data_dir),
           "STREAMREC_KAFKA__BOOTSTRAP_SERVERS": s.kafka.bootstrap_servers,
           "STREAMREC_KAFKA__TOPIC_PREFIX": s.kafka.topic_prefix, "STREAMREC_KAFKA__PARTITIONS": "4",
           "STREAMREC_REDIS__URL": s.redis.url, "STREAMREC_REDIS__KEY_PREFIX": s.redis.key_prefix,
           "STREAMREC_LOG_LEVEL": "WARNING", "STREAMREC_FEAST__PROJECT": s.feast.project}
    for name in ("group_id", "session_timeout_s", "rebalance_timeout_s", "commit_interval_s", "batch_size",
                 "content_model", "feature_push", "metrics_port", "covisit_cap"):
        env[f"STREAMREC_WORKER__{name.upper()}"] = str(getattr(w, name)).lower()
    return {k: str(v) for k, v in env.items()}


def start_worker(s: Settings, name: str = "worker") -> ChildProcess:
    return spawn(name, [sys.executable, "-m", "streams.worker"], s.data_dir / "logs", worker_env(s))


def create_topics(s: Settings) -> None:
    admin = KafkaAdminClient(bootstrap_servers=s.kafka.bootstrap_servers)
    names = Topics(s.kafka.topic_prefix).all()
    admin.create_topics([NewTopic(n, 4, 1) for n in names])
    admin.close()


def stats(s: Settings) -> dict[str, int]:
    r = redis_client(s)
    try:
        return {k.decode(): int(v) for k, v in r.hgetall(Keys(s.redis.key_prefix).stats).items()}
    finally:
        r.close()


def wait_for(pred: Callable[[], bool], timeout: float, what: str, worker: ChildProcess | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        if worker is not None and not worker.alive():
            raise AssertionError(f"worker died while waiting for {what}: see {worker.log_path}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def ready(s: Settings) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{s.worker.metrics_port}/readyz", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def producer(s: Settings) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=s.kafka.bootstrap_servers, linger_ms=5, acks="all")


def items(n: int, now: float) -> list[ItemUpsert]:
    rng = random.Random(7)
    return [ItemUpsert(item_id=f"i{k}", title=f"item {k}", categories=rng.sample(CATS, 2),
                       created_at=now - 1000 + k, timestamp=now - 1000 + k) for k in range(n)]


def interactions(n: int, users: int, n_items: int, now: float, seed: int = 3) -> list[Interaction]:
    """Impressions with feed_id/position, clicks (mostly attributed to an earlier impression), likes,
    dwells and skips, over a few devices; timestamps increase and end at ``now``."""
    rng = random.Random(seed)
    shown: dict[str, list[tuple[str, int, str]]] = {}
    out = []
    for k in range(n):
        u = f"u{rng.randrange(users)}"
        ts = now - (n - k) * 0.005
        ctx = {"device": rng.choice(DEVICES)}
        roll = rng.random()
        if roll < 0.5 or not shown.get(u):
            feed, pos, item = f"f{k // 10}", k % 10, f"i{rng.randrange(n_items)}"
            shown.setdefault(u, []).append((feed, pos, item))
            ev = dict(type="impression", item_id=item, feed_id=feed, position=pos)
        elif roll < 0.8:
            feed, pos, item = rng.choice(shown[u])
            ev = dict(type="click", item_id=item, feed_id=feed, position=pos)
        else:
            ev = dict(type=rng.choice(["like", "dwell", "skip", "click"]),
                      item_id=f"i{rng.randrange(n_items)}", value=rng.choice([5.0, 40.0]))
        out.append(Interaction(event_id=f"e{k}", user_id=u, timestamp=ts, context=ctx, **ev))
    return out


def with_duplicates(events: list[Interaction], fraction: float, seed: int = 5) -> list[Interaction]:
    """Re-send ``fraction`` of the events (same event_id and payload) somewhat later in the stream."""
    rng = random.Random(seed)
    keyed = [(float(k), ev) for k, ev in enumerate(events)]
    for k in rng.sample(range(len(events)), int(len(events) * fraction)):
        keyed.append((k + rng.randrange(1, 3000) + 0.5, events[k]))
    return [ev for _, ev in sorted(keyed, key=lambda kv: kv[0])]


def reference_state(s: Settings, item_list: list[ItemUpsert], events: list[Interaction]) -> str:
    """Apply the unique events in one batch (no crash, no duplicate) under a fresh key prefix."""
    prefix = s.redis.key_prefix + "ref:"

    async def run() -> None:
        r = resp.connect(s.redis.url or "", 1.0, 30.0)
        w = OnlineWriter(r, Keys(prefix), effect_params(s), s.worker.dedupe_ttl_s,
                         TransformParams.from_settings(s))
        if item_list:
            await w.apply_items([(None, it) for it in item_list], vectors(item_list), {}, {},
                                StatsDelta("items"))
        seen: set[str] = set()
        unique = [e for e in events if not (e.event_id in seen or seen.add(e.event_id))]  # type: ignore[func-returns-value]
        await w.apply_interactions([(None, e) for e in unique], {}, {}, StatsDelta("interactions"))
        await r.close()

    asyncio.run(run())
    return prefix


def dump(s: Settings, prefix: str) -> dict[str, Any]:
    """Every key under ``prefix`` (minus bookkeeping) with a normalized value (pipelined reads)."""
    r = redis_client(s)
    keys = [k for k in r.scan_iter(match=f"{prefix}*".encode(), count=5000)
            if not k.decode()[len(prefix):].startswith("ref:") and not _bookkeeping(k.decode())]
    with r.pipeline(transaction=False) as pipe:
        for k in keys:
            pipe.type(k)
        kinds = [t.decode() for t in pipe.execute()]
    readers = {"string": lambda p, k: p.get(k), "list": lambda p, k: p.lrange(k, 0, -1),
               "set": lambda p, k: p.smembers(k), "zset": lambda p, k: p.zrange(k, 0, -1, withscores=True),
               "hash": lambda p, k: p.hgetall(k)}
    with r.pipeline(transaction=False) as pipe:
        for k, kind in zip(keys, kinds, strict=True):
            readers[kind](pipe, k)
        values = pipe.execute()
    out: dict[str, Any] = {}
    for k, kind, v in zip(keys, kinds, values, strict=True):
        rel = k.decode()[len(prefix):]
        out[rel] = _normalize(rel, kind, v)
    return out


def _bookkeeping(key: str) -> bool:
    """Watermarks, stats, shard offsets and the catalog version: they count batches, which differ
    between runs by design."""
    rest = key[key.index("}") + 1:]
    return rest in (":off", ":stats", ":aw", ":version")


def _normalize(rel: str, kind: str, v: Any) -> Any:
    """Row timestamps (``ts_us``, ``t``) count applies, so they differ after a crash; a dedupe
    marker holds the coordinates that applied it."""
    if kind == "string" and ":fs:user:" in rel:
        return {k: val for k, val in vars(tf.loads_user(v, "")).items() if k != "ts_us"}
    if kind == "hash" and ":fs:item:" in rel:
        return {k.decode(): val.decode() for k, val in v.items() if k != b"t"}
    if kind == "string" and ":dd:" in rel:
        return "marker"
    if kind == "set":
        return sorted(v)
    if kind == "zset":
        return dict(v)
    return v


def assert_same(actual: Any, expected: Any, path: str = "") -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict), path
        assert sorted(map(str, actual)) == sorted(map(str, expected)), f"keys differ at {path}"
        for k in expected:
            assert_same(actual[k], expected[k], f"{path}/{k!r}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"length differs at {path}"
        for n, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same(a, e, f"{path}[{n}]")
    elif _num(expected) is not None and _num(actual) is not None:
        assert math.isclose(_num(actual), _num(expected), rel_tol=1e-9, abs_tol=1e-9), \
            f"{path}: {actual!r} != {expected!r}"
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local three-master Redis Cluster (``redis+cluster://``) for the tests of this module."""
    from services.local_cluster import local_cluster

    with local_cluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster.url


@pytest.fixture
def stream_settings(tmp_path: Path, kafka_bootstrap: str, redis_url: str) -> Iterator[Settings]:
    s = make_settings(tmp_path, kafka_bootstrap, redis_url)
    create_topics(s)
    yield s


def assert_feast_matches(s: Settings, ref_prefix: str, users: list[str], item_ids: list[str]) -> None:
    """Feast online values (pushed by the worker) equal the projections of the reference states."""
    from core.features import ITEM_REALTIME, USER_AFFINITY, USER_REALTIME
    from feature_store import transforms as tf
    from feature_store.config import feature_store

    r = redis_client(s)
    keys, tp = Keys(ref_prefix), TransformParams.from_settings(s)
    fs = feature_store(s)
    got = fs.get_online_features(features=USER_REALTIME.refs + USER_AFFINITY.refs,
                                 entity_rows=[{"user_id": u} for u in users]).to_dict()
    for n, u in enumerate(users):
        st = tf.loads_user(r.get(keys.user_features(u)), u)
        exp = {**tf.project_user_realtime(st), **tf.project_user_affinity(st, params=tp)}
        for f in (*USER_REALTIME.fields, *USER_AFFINITY.fields):
            assert_same(got[f][n], exp[f], f"feast/{u}/{f}")
    got = fs.get_online_features(features=ITEM_REALTIME.refs[:-1],
                                 entity_rows=[{"item_id": i} for i in item_ids]).to_dict()
    for n, i in enumerate(item_ids):
        fields = {k.decode(): v.decode() for k, v in r.hgetall(keys.item_features(i)).items()}
        exp = tf.project_item_realtime(item_state(i, fields))
        for f in ITEM_REALTIME.fields[:-1]:
            assert_same(got[f][n], exp[f], f"feast/{i}/{f}")
