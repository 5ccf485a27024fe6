"""Deletion across every store, on real Kafka and Redis: the online state written by the worker's own
writer, a Feast online row and Feast's batch-source files, the parquet archive, the compacted ``feeds``
topic and the SQL control database. ``DELETE /v1/users/u1`` (the API) and ``streamrec forget item``
(the CLI's request) write to the ``deletions`` topic; the eraser consumes it; then every store is
scanned for the user and the item. The user is nowhere (the feeds topic holds a tombstone as u1's last
record), other users are untouched, and the deleted item, in u2's feed before, is never served again."""

from __future__ import annotations

import sqlite3
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from serving_helpers import seed_state, small_world

from core.deletions import Deletion
from core.features import USER_REALTIME
from core.settings import Settings
from core.tenancy import control_url
from core.topics import INTERACTIONS, ITEMS, USERS, Topics
from feature_store.archive import ParquetArchive
from feature_store.feast_rows import entity_key
from services.api.app import create_app
from services.cli.forget import request
from services.pipeline.build import build_pipeline
from services.privacy.service import consume

pytestmark = pytest.mark.integration
GONE = "i001"  # the item to delete: u2's first recommendation before


def _seed_other_stores(settings: Settings) -> None:
    now = time.time()
    archive = ParquetArchive(settings.archive_dir)
    archive.append(INTERACTIONS, [{"event_id": f"seen{u}", "user_id": f"u{u}", "item_id": "i000",
                                   "type": "click", "timestamp": now - 30} for u in (1, 2)])
    archive.append(USERS, [{"user_id": u, "segment": "s", "timestamp": now - 20} for u in ("u1", "u2")])
    archive.append(ITEMS, [{"item_id": i, "title": f"t-{i}", "created_at": now - 9e4, "timestamp": now - 9e4}
                           for i in (GONE, "i002")])
    r = redis.Redis.from_url(settings.redis.url or "")
    for user in ("u1", "u2"):
        r.hset(entity_key(USER_REALTIME.join_key, user, settings.feast.project), "_ts:user_realtime", b"x")
    offline = settings.data_dir / "offline"
    offline.mkdir(parents=True, exist_ok=True)
    users = pa.table({"user_id": ["u1", "u2", "u1"], "segment": ["a", "b", "c"]})
    pq.write_table(users, offline / "users.parquet")
    pq.write_table(pa.table({"item_id": [GONE, "i002"], "title": ["x", "y"]}), offline / "items.parquet")
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    for user in ("u1", "u2"):
        producer.send(Topics(settings.kafka.topic_prefix).feeds, key=user.encode(), value=b'{"items": []}')
    producer.flush()
    producer.close()


def _last_feeds_records(settings: Settings) -> dict[bytes, bytes | None]:
    consumer = KafkaConsumer(Topics(settings.kafka.topic_prefix).feeds,
                             bootstrap_servers=settings.kafka.bootstrap_servers,
                             auto_offset_reset="earliest", consumer_timeout_ms=3000)
    last = {rec.key: rec.value for rec in consumer}
    consumer.close()
    return last


def _sql_cells(url: str) -> list[str]:
    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    cells = [str(c) for t in tables for row in conn.execute(f'SELECT * FROM "{t}"') for c in row]  # noqa: S608
    conn.close()
    return cells


def test_a_deleted_user_and_item_leave_every_store(settings: Settings):
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    admin.create_topics([NewTopic(t, 1, 1) for t in Topics(settings.kafka.topic_prefix).all()])
    admin.close()
    api_settings = settings.api.model_copy(update={"queue_timeout_ms": 30_000.0})  # a busy machine
    settings = settings.model_copy(update={"api": api_settings})
    seed_state(settings, *small_world())
    _seed_other_stores(settings)
    pipeline, close = build_pipeline(settings, hot_swap=False)
    with TestClient(create_app(settings, pipeline, close)) as api:
        assert api.app.state.ctx.producer.wait(20) is not None  # type: ignore[attr-defined]
        before = [it["item_id"] for it in api.get("/v1/feed/u2", params={"n": 5}).json()["items"]]
        assert before[0] == GONE, before
        assert api.get("/v1/users/u1/export").json()["online"]  # u1 has state to forget

        assert api.delete("/v1/users/u1").status_code == 202
        request(settings, Deletion(kind="item", subject_id=GONE, requested_at=time.time()), False, 0.0)
        assert consume(settings, threading.Event(), idle_stop_s=60.0, max_requests=2) == 2

        pipeline.state._cache.clear()  # type: ignore[attr-defined]  # the item cache's TTL, skipped
        after = [it["item_id"] for it in api.get("/v1/feed/u2", params={"n": 5}).json()["items"]]
        similar = api.get("/v1/items/i000/similar", params={"n": 20}).json()["items"]
        export = api.get("/v1/users/u1/export").json()

    assert GONE not in after and len(after) == 5, after
    assert GONE not in [s["item_id"] for s in similar]
    assert export["online"] == {} and export["archive"] == {"interactions": [], "users": []}
    # Redis (online state and Feast's rows): no key of u1's, no dedupe marker of its event
    r = redis.Redis.from_url(settings.redis.url or "")
    # this test's keys only: the session's Redis also holds other tests' users named u1
    keys = [k.decode() for k in r.scan_iter(match=f"{settings.redis.key_prefix}*", count=1000)]
    assert not [k for k in keys if k.endswith(":u1") or k.endswith(":dd:seen1")]
    assert [k for k in keys if k.endswith(":u2")]  # other users keep theirs
    assert not r.exists(entity_key(USER_REALTIME.join_key, "u1", settings.feast.project))
    assert r.exists(entity_key(USER_REALTIME.join_key, "u2", settings.feast.project))
    # the archive: no record naming u1 in any topic, none of the item's catalogue records
    archive = ParquetArchive(settings.archive_dir)
    rows = {t: list(archive.iter_events(t)) for t in (INTERACTIONS, USERS, ITEMS)}
    assert all(rec.get("user_id") != "u1" for recs in rows.values() for rec in recs)
    assert {rec["user_id"] for rec in rows[USERS]} == {"u2"}
    assert {rec["item_id"] for rec in rows[ITEMS]} == {"i002"}
    # Feast's batch-source files
    offline = settings.data_dir / "offline"
    assert pq.read_table(offline / "users.parquet").column("user_id").to_pylist() == ["u2"]
    assert pq.read_table(offline / "items.parquet").column("item_id").to_pylist() == ["i002"]
    # the compacted feeds topic: u1's last record is a tombstone
    last = _last_feeds_records(settings)
    assert last[b"u1"] is None and last[b"u2"] is not None
    # SQL: the control and metadata database holds no cell with the ids, only hashes
    cells = _sql_cells(control_url(settings))
    assert cells and "u1" not in cells and GONE not in cells
