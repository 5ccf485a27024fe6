"""Issue 16, must show: deletion on the real stack. Events go through the stack's broker to the real worker
(Redis state, archive) and publisher (feeds topic); a user is deleted through the API's
``DELETE /v1/users/{id}`` and an item through ``streamrec forget``; the eraser consumes the deletions
topic; then every store is scanned: Redis (every key), the archive the worker wrote, the compacted
``feeds`` topic (a tombstone is the user's last record), the SQL control/metadata database. The
deleted item, in a user's feed before, is never served again: as soon as the API heard of it, not
after its 30 s item cache. (Feast pushes are off in these fast stack settings; Feast's rows are
covered by tests/integration/serving/test_serving_deletion.py.)"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis
from kafka import KafkaConsumer

from core.deletions import Deletion
from core.tenancy import control_url
from core.topics import INPUT_TOPICS, Topics
from feature_store.archive import ParquetArchive
from services.cli.forget import request
from services.privacy.service import consume
from tests.integration.stack.stack_real import (
    Store,
    catalogue,
    clicks,
    make_stack,
    real_settings,
    send,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def _feed(url: str) -> list[str] | None:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return [it["item_id"] for it in json.loads(resp.read())["items"]]
    except urllib.error.HTTPError:
        return None  # a 503 (shed while the machine is busy): ask again


def _delete(url: str) -> int:
    with urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=30) as resp:
        return int(resp.status)


def _heard(url: str) -> float:
    """streamrec_deletions_heard_total of a process (items and users)."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        lines = resp.read().decode().splitlines()
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines
               if ln.startswith("streamrec_deletions_heard_total{"))


def _last_feeds(s: object, bootstrap: str, topic: str) -> dict[bytes, bytes | None]:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=3000)
    last = {rec.key: rec.value for rec in consumer}
    consumer.close()
    return last


def test_a_user_and_an_item_deleted_on_the_real_stack_leave_no_trace(tmp_path: Path):
    settings = real_settings(tmp_path, None, "del-")
    with make_stack(settings) as stack:
        s, store, now = stack.settings, Store(stack.settings), time.time()
        crowd = [e for k in range(3) for e in clicks(f"fan{k}", ["i3", "i4", "i5"][: 3 - k], now, "crowd")]
        send(s, *catalogue(now), *crowd, *clicks("alice", ["i1"], now + 1, "alice"),
             *clicks("bob", ["i1"], now + 1, "bob"))
        wait_for(lambda: store.history("alice") == ["i1"] and store.history("bob") == ["i1"], 90,
                 "alice's and bob's clicks applied")
        topics = Topics(s.kafka.topic_prefix)
        wait_for(lambda: b"alice" in _last_feeds(s, str(s.kafka.bootstrap_servers), topics.feeds), 90,
                 "a feed for alice published")
        before = wait_for(lambda: _feed(stack.url("api", "/v1/feed/bob?n=5")), 30, "bob's feed")
        assert before[0] == "i3", before

        assert _delete(stack.url("api", "/v1/users/alice")) == 202
        request(s, Deletion(kind="item", subject_id="i3", requested_at=time.time()), False, 0.0)
        assert consume(s, threading.Event(), idle_stop_s=90.0, max_requests=2) == 2

        # the API heard of the deletions (the eraser's announcement): its caches forgot the item
        wait_for(lambda: _heard(stack.probe_url("api", "/metrics")) >= 2, 60, "the API heard of both")
        after = wait_for(lambda: _feed(stack.url("api", "/v1/feed/bob?n=5")), 30, "bob's feed after")
        store.close()
        assert "i3" not in after, after

        r = redis.Redis.from_url(str(s.redis.url))
        keys = [k.decode() for k in r.scan_iter(count=1000)]
        assert not [k for k in keys if k.endswith(":alice") or ":dd:alice-" in k], keys
        assert [k for k in keys if k.endswith(":bob")]
        archive = ParquetArchive(s.archive_dir)
        records = [rec for t in INPUT_TOPICS for rec in archive.iter_events(t)]
        assert records and all(rec.get("user_id") != "alice" for rec in records)
        assert any(rec.get("user_id") == "bob" for rec in records)
        last = _last_feeds(s, str(s.kafka.bootstrap_servers), topics.feeds)
        assert last[b"alice"] is None, "alice's last record on feeds is a tombstone"
        conn = sqlite3.connect(control_url(s).removeprefix("sqlite:///"))
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        cells = [str(c) for t in tables for row in conn.execute(f'SELECT * FROM "{t}"') for c in row]  # noqa: S608
        conn.close()
        assert cells and "alice" not in cells and "i3" not in cells
