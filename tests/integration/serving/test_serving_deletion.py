"""Deletion across every store, on real Kafka and Redis: the online state written by the worker's own
writer, a Feast online row and Feast's batch-source files, the parquet archive, the compacted ``feeds``
topic and the SQL stores (the control database and the lifecycle registry, on SQLite and on the
PostgreSQL at 127.0.0.1:5432). ``DELETE /v1/users/u1`` (the API) and ``streamrec forget item`` (the
CLI's request) write to the ``deletions`` topic; the eraser consumes it; then every store is scanned for
the user and the item. The user is nowhere (the feeds topic holds a tombstone as u1's last record; no
SQL cell names u1, though a job's error, its details and a model's reason did), other users are
untouched, and the deleted item, in u2's feed and u2's last published feed before, is never served
again: not in a full feed, not in a degraded one from the API's caches (the store's breaker open), not
as u2's latest feed on the topic; the item cache's TTL is not waited for."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from serving_helpers import seed_state, small_world
from sqlalchemy import create_engine, inspect, text

from core.deletions import Deletion
from core.events import Feed, FeedItem, decode_feed, decode_item, encode
from core.features import USER_REALTIME
from core.settings import DatabaseSettings, Settings
from core.tenancy import control_url
from core.topics import INTERACTIONS, ITEMS, USERS, Topics
from feature_store.archive import ParquetArchive
from feature_store.feast_rows import entity_key
from services.api.app import create_app
from services.cli.forget import request
from services.metadata import MetadataStore
from services.pipeline.build import build_pipeline
from services.privacy.service import consume
from tests.conftest import pg_schema, wait_until

pytestmark = pytest.mark.integration
GONE = "i001"  # the item to delete: u2's first recommendation before
U1 = re.compile(r"(?<![\w.@-])u1(?![\w.@-])")  # the user's id as a token, anywhere in a cell


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The SQL stores' URL: SQLite under the test's directory, or a schema of its own on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'metadata.db'}"
        return
    with pg_schema("del") as url:
        yield url


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
    feeds = Topics(settings.kafka.topic_prefix).feeds
    for user, items in (("u1", ["i000"]), ("u2", [GONE, "i002", "i003"]), ("u3", ["i002", "i003"])):
        producer.send(feeds, key=user.encode(), value=encode(_published(user, items)))
    producer.flush()
    producer.close()
    # another tenant's keys extend this one's prefix: its lists keep the item
    r.zadd(f"{settings.redis.key_prefix}acme:{{0}}:pop:x", {GONE: 1.0})
    # free text of the SQL stores that names the user (and, kept, another)
    meta = MetadataStore(settings.database_url)
    run = meta.start_job("publish", details={"user": "u1", "users": ["u1", "u2"]})
    meta.finish_job(run, "failed", "KeyError: 'u1' (while publishing u1's feed; u10 and u2 fine)")
    meta.add_model("ranker", "v1", reason="retrained after a burst from u1")
    meta.close()


def _published(user: str, items: list[str]) -> Feed:
    return Feed(feed_id=uuid.uuid4().hex, user_id=user, version=1, generated_at=time.time() - 5,
                items=[FeedItem(item_id=i, rank=r, score=1.0, source="popular") for r, i in enumerate(items)])


def _last_feeds_records(settings: Settings) -> dict[bytes, bytes | None]:
    return _last_records(settings, Topics(settings.kafka.topic_prefix).feeds)


def _last_records(settings: Settings, topic: str) -> dict[bytes, bytes | None]:
    consumer = KafkaConsumer(topic,
                             bootstrap_servers=settings.kafka.bootstrap_servers,
                             auto_offset_reset="earliest", consumer_timeout_ms=3000)
    last = {rec.key: rec.value for rec in consumer}
    consumer.close()
    return last


def _sql_cells(url: str) -> list[str]:
    """Every cell of every table of the database, as text."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [str(c) for t in inspect(conn).get_table_names()
                    for row in conn.execute(text(f'SELECT * FROM "{t}"')) for c in row]  # noqa: S608
    finally:
        engine.dispose()


def test_a_deleted_user_and_item_leave_every_store(settings: Settings, database: str):
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    admin.create_topics([NewTopic(t, 1, 1) for t in Topics(settings.kafka.topic_prefix).all()])
    admin.close()
    api_settings = settings.api.model_copy(update={"queue_timeout_ms": 30_000.0})  # a busy machine
    settings = settings.model_copy(update={"api": api_settings, "database": DatabaseSettings(url=database)})
    seed_state(settings, *small_world())
    _seed_other_stores(settings)
    pipeline, close = build_pipeline(settings, hot_swap=False)
    with TestClient(create_app(settings, pipeline, close)) as api:
        assert api.app.state.ctx.producer.wait(20)  # type: ignore[attr-defined]
        before = [it["item_id"] for it in api.get("/v1/feed/u2", params={"n": 5}).json()["items"]]
        assert before[0] == GONE, before
        assert api.get("/v1/users/u1/export").json()["online"]  # u1 has state to forget

        assert api.get("/v1/feed/u1", params={"n": 5}).json()["items"]  # the API caches u1's feed too

        assert api.delete("/v1/users/u1").status_code == 202
        request(settings, Deletion(kind="item", subject_id=GONE, requested_at=time.time()), False, 0.0)
        assert consume(settings, threading.Event(), idle_stop_s=60.0, max_requests=2) == 2
        # the API process heard of both (its watcher thread reads the eraser's announcements)
        forgotten = pipeline.forgotten
        wait_until(lambda: forgotten.item(GONE) and forgotten.user("u1"), "the API heard of the deletions")

        # degraded answers first (the store's circuit breaker held open), from what the caches held
        state = pipeline.state
        state._down_until = time.monotonic() + 3600  # type: ignore[attr-defined]
        cached = api.get("/v1/feed/u2", params={"n": 5}).json()
        gone_user = api.get("/v1/feed/u1", params={"n": 5}).json()
        state._down_until = 0.0  # type: ignore[attr-defined]
        after = [it["item_id"] for it in api.get("/v1/feed/u2", params={"n": 5}).json()["items"]]
        similar = api.get("/v1/items/i000/similar", params={"n": 20}).json()["items"]
        export = api.get("/v1/users/u1/export").json()

    assert GONE not in after and len(after) == 5, after
    # degraded answers: u2's last feed from the API's cache, without the item; none kept for u1
    assert cached["degraded"] and cached["trigger"] == "fallback:store", cached
    assert [it["item_id"] for it in cached["items"]] == [i for i in before if i != GONE], (cached, before)
    assert gone_user["degraded"] and all(it["source"] == "popular_snapshot" for it in gone_user["items"])
    assert GONE not in [it["item_id"] for it in gone_user["items"]]
    assert GONE not in [s["item_id"] for s in similar]
    assert export["online"] == {} and export["archive"] == {"interactions": [], "users": []}
    assert export["last_feed"] is None  # the API's cache dropped u1's last feed
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
    # the compacted feeds topic: u1's last record is a tombstone; u2's last feed is a new version
    # without the item (the others kept, in order); u3's, which never held it, is untouched
    last = _last_feeds_records(settings)
    assert last[b"u1"] is None
    u2 = decode_feed(last[b"u2"] or b"")
    assert [it.item_id for it in u2.items] == ["i002", "i003"] and u2.trigger == "deletion", u2
    assert [it.item_id for it in decode_feed(last[b"u3"] or b"").items] == ["i002", "i003"]
    # the compacted items topic: the item's last record is the inactive stub (a replay keeps it out)
    items_topic = Topics(settings.kafka.topic_prefix).items
    stub = decode_item(_last_records(settings, items_topic)[GONE.encode()] or b"")
    assert not stub.active and not stub.text and stub.item_id == GONE
    assert r.zscore(f"{settings.redis.key_prefix}acme:{{0}}:pop:x", GONE) == 1.0
    # SQL (the control database and the registry, one database here): no cell names u1 any more,
    # the rest of those rows stays; no cell is the item (only hashes of requests)
    assert control_url(settings) == settings.database_url == database
    cells = _sql_cells(database)
    assert cells and not [c for c in cells if U1.search(c)], [c for c in cells if U1.search(c)]
    assert any("u10 and u2 fine" in c for c in cells) and any("u2" in c for c in cells)
    assert GONE not in cells
