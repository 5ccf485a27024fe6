"""The worker writes Feast's online rows into Feast's Redis layout itself (``FeastRedisWriter``): the
hashes are byte for byte those ``FeatureStore.push`` (ONLINE) writes for the same rows, Feast reads
them back unchanged, and a row is kept only when newer than the stored one (Feast's rule, applied
atomically). On one redis-server and on a local three-master Redis Cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from core.features import ITEM_REALTIME, USER_AFFINITY, USER_REALTIME
from core.settings import Settings
from feature_store import transforms as tf
from feature_store.config import feature_store
from feature_store.feast_rows import FeastRedisWriter
from feature_store.online import resp
from feature_store.online.redis_state import redis_client
from feature_store.repository import apply
from feature_store.writer import FeatureWriter
from services.cli.ingest_probe import user_row_key
from services.local_cluster import local_cluster

pytestmark = pytest.mark.integration
T0 = 1_790_000_000.0


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with local_cluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster.url


@pytest.fixture(params=["redis", "cluster"])
def store_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    if request.param == "cluster":
        url = request.getfixturevalue("cluster_url")
        settings = settings.model_copy(update={"redis": settings.redis.model_copy(update={"url": url})})
    apply(settings)
    return settings


def _rows(shift_s: float = 0.0) -> dict[str, list[dict[str, Any]]]:
    users, items = [], []
    for n in range(20):
        st = tf.UserState(f"u{n}")
        for k in range(1 + n % 7):
            ev = _event(f"e{n}-{k}", f"u{n}", f"i{k}", "click" if k % 2 else "like", T0 + shift_s + k)
            tf.apply_user_event(st, ev, ["jazz", f"c{k % 3}"], tf.TransformParams())
        users.append(st)
        it = tf.ItemState(f"i{n}", created_at=T0 - 3600 * n if n % 4 else None)
        for k in range(1 + n):
            tf.apply_item_event(it, _event(f"x{n}-{k}", "u0", f"i{n}", "impression" if k % 3 else "click",
                                           T0 + shift_s + 10 * k))
        items.append(it)
    return {USER_REALTIME.view: [tf.project_user_realtime(s) for s in users],
            USER_AFFINITY.view: [tf.project_user_affinity(s) for s in users],
            ITEM_REALTIME.view: [tf.project_item_realtime(s) for s in items]}


def _event(eid: str, user: str, item: str, typ: str, ts: float) -> Any:
    from core.events import Interaction

    return Interaction(event_id=eid, user_id=user, item_id=item, type=typ, timestamp=ts)


def _hashes(s: Settings) -> dict[bytes, dict[bytes, bytes]]:
    r = redis_client(s)
    out = {}
    for key in r.scan_iter(match=b"*" + s.feast.project.encode(), count=1000):
        out[key] = r.hgetall(key)
    return out


def _clear(s: Settings) -> None:
    r = redis_client(s)
    for key in list(_hashes(s)):
        r.delete(key)


def _user_keys(s: Settings) -> set[bytes]:
    return {user_row_key(s.feast.project, f"u{n}") for n in range(20)}


def _write(s: Settings, rows: dict[str, list[dict[str, Any]]]) -> int:
    async def run() -> int:
        client = resp.connect(s.redis.url or "", 1.0, 10.0)
        try:
            return await FeastRedisWriter(client, s.feast.project).write(rows)
        finally:
            await client.close()

    return asyncio.run(run())


def _push(s: Settings, rows: dict[str, list[dict[str, Any]]]) -> None:
    w = FeatureWriter(feature_store(s), batch_size=10_000, interval_ms=60_000)
    for view, view_rows in rows.items():
        w.push(view, view_rows)
    w.flush()


def test_rows_are_written_as_feast_push_writes_them(store_settings: Settings) -> None:
    s, rows = store_settings, _rows()
    _push(s, rows)
    by_feast = _hashes(s)
    _clear(s)
    assert _write(s, rows) == sum(len(v) for v in rows.values())
    mine = _hashes(s)
    assert len(by_feast) == 40
    assert {k: {f: v for f, v in h.items() if not f.startswith(b"_us:")} for k, h in mine.items()} == by_feast
    assert all(f"_us:{USER_REALTIME.view}".encode() in h for k, h in mine.items() if k in _user_keys(s))
    got = feature_store(s).get_online_features(
        features=USER_REALTIME.refs + USER_AFFINITY.refs, entity_rows=[{"user_id": "u5"}]).to_dict()
    for f in (*USER_REALTIME.fields, *USER_AFFINITY.fields):
        view = USER_REALTIME.view if f in USER_REALTIME.fields else USER_AFFINITY.view
        assert got[f][0] == rows[view][5][f]


def test_only_a_newer_row_replaces_the_stored_one(store_settings: Settings) -> None:
    s = store_settings
    newer, older = _rows(shift_s=100.0), _rows()
    _push(s, older)  # rows Feast itself wrote (no _us: field): their Timestamp is compared
    assert _write(s, newer) == 60
    before = _hashes(s)
    assert _write(s, older) == 0 and _write(s, newer) == 0  # older, and the same instant: kept
    assert _hashes(s) == before
    newest = _rows(shift_s=200.0)
    assert _write(s, newest) == 60
    r = redis_client(s)
    key = user_row_key(s.feast.project, "u6")
    ts_field = f"_ts:{USER_REALTIME.view}".encode()
    assert r.hget(key, ts_field) != before[key][ts_field]


def test_the_fast_reader_reads_the_rows_as_feast_does(store_settings: Settings) -> None:
    """On a cluster too: its HMGETs go to each entity key's node."""
    from feature_store.reader import FastFeatureReader

    s = store_settings
    _write(s, _rows())
    fs = feature_store(s)
    reader = FastFeatureReader.from_settings(s, fs)
    users = [f"u{n}" for n in range(20)] + ["nobody"]
    want = fs.get_online_features(features=USER_REALTIME.refs + USER_AFFINITY.refs,
                                  entity_rows=[{"user_id": u} for u in users]).to_dict()
    for n, u in enumerate(users):
        got = reader.user_features(u)
        for name in (*USER_REALTIME.fields, *USER_AFFINITY.fields):
            assert got[name] == want[name][n], (u, name)
    items = [f"i{n}" for n in range(20)] + ["none"]
    want = fs.get_online_features(features=ITEM_REALTIME.refs,
                                  entity_rows=[{"item_id": i} for i in items]).to_dict()
    for n, row in enumerate(reader.item_features(items)):
        for name in ITEM_REALTIME.fields:
            assert row[name] == want[name][n], (items[n], name)
