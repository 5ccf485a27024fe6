"""The eraser: applies a :class:`core.deletions.Deletion` to every store of one tenant.

A **user** is removed from:

* the online state: the user's entity keys (history, seen, impressions, feature state, profile) and
  the dedupe markers of the user's archived events;
* Feast's online store: the user's entity row (every view: one Redis hash per entity key), and the
  user's rows in Feast's batch-source parquet files (``data_dir/offline``);
* the parquet archive: every partition file holding a record naming the user is rewritten without it
  (every topic: interactions, users, impressions);
* the ``feeds`` topic: a tombstone (null value) on the user's key, which compaction then applies;
* the SQL stores: no table has a user column (the control database keeps the request with the
  subject's SHA-256 only, ``services.metadata.access``); the user's id is replaced wherever free text
  named it (a job's error or details, a reason: ``services.privacy.sql``);
* every serving process's caches: the eraser announces the deletion (the user's pseudonym) on the
  tenant's ``Keys.forgotten`` stream, and each API and publisher process drops the user's last feed
  (``services.pipeline.forgotten``).

An **item** becomes an inactive stub (id only, ``active = false``: retrieval drops it from every
candidate pool and index answer, so it is never served again), its own keys (co-visitation list,
linear model, vector, feature state) and Feast row are deleted, it is removed from every sorted set
and set of the tenant (popularity, trending, co-visitation lists of other items, fresh, active), and
its catalogue records are removed from the archive. It then leaves every cached feed: the deletion is
announced on ``Keys.forgotten`` (each API and publisher process evicts it from its item cache, its
last-feed cache and popularity snapshot, and cleans every later feed of it), and after
``FEEDS_GRACE_S`` every user's last feed on the compacted ``feeds`` topic that holds it gets a new
version without it (``services.privacy.feeds``). Interactions with the item stay in the users'
histories (they are the users' data), as do aggregates no person can be identified from.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import redis

from core.deletions import Deletion, pseudonym
from core.events import ItemUpsert, encode
from core.features import ITEM_REALTIME, USER_REALTIME
from core.settings import Settings
from core.tenancy import control_url
from core.topics import INTERACTIONS, ITEMS, Topics
from feature_store import transforms as tf
from feature_store.archive import ParquetArchive
from feature_store.feast_rows import entity_key
from feature_store.online import resp
from feature_store.online.batch import effect_params
from feature_store.online.keys import Keys
from feature_store.online.writer import OnlineWriter, StatsDelta
from services.privacy.feeds import rewrite_feeds
from services.privacy.sql import scrub_user

log = logging.getLogger(__name__)
USER_STORES = ("redis", "feast", "offline", "archive", "feeds", "sql")
ITEM_STORES = ("redis", "feast", "offline", "archive", "sql", "feeds", "catalog")
FEEDS_GRACE_S = 1.0  # announced -> feeds topic rewritten: every publisher has heard by then
ANNOUNCED = 10_000  # entries kept on the Keys.forgotten stream (readers need only the latest)


def stores(kind: str) -> tuple[str, ...]:
    return USER_STORES if kind == "user" else ITEM_STORES


class Eraser:
    """Erases subjects from the stores of ``settings`` (one tenant's, see core.tenancy.scoped).
    ``producer``: a kafka-python producer for the feeds tombstone (None: that store is skipped and
    reported as not done)."""

    def __init__(self, settings: Settings, client: redis.Redis, producer: Any | None) -> None:
        self.settings, self.r, self.producer = settings, client, producer
        self.keys = Keys(settings.redis.key_prefix)
        self.archive = ParquetArchive(settings.archive_dir)
        self.topics = Topics(settings.kafka.topic_prefix)

    def erase(self, d: Deletion, on_done: Callable[[str], None] | None = None) -> dict[str, int]:
        """Erase ``d``'s subject from every store; returns what each removed (keys, rows, records).
        ``on_done(store)`` after each store finished."""
        steps: dict[str, Callable[[str], int]] = (
            {"redis": self._user_online, "feast": self._user_feast, "offline": self._offline("user_id"),
             "archive": self._user_archive, "feeds": self._tombstone, "sql": self._user_sql}
            if d.kind == "user" else
            {"redis": self._item_online, "feast": self._item_feast, "offline": self._offline("item_id"),
             "archive": self._item_archive, "sql": lambda _: 0, "feeds": self._item_feeds,
             "catalog": self._item_catalog})
        done: dict[str, int] = {}
        for store, step in steps.items():
            done[store] = step(d.subject_id)
            if on_done is not None:
                on_done(store)
        log.info("erased %s (request %s): %s", d.kind, d.request_id, done)
        return done

    # ---- users ---------------------------------------------------------------------------------
    def _user_online(self, user_id: str) -> int:
        """The user's keys, and the dedupe markers of the user's archived events (before the archive
        forgets which events were the user's)."""
        k = self.keys
        markers = [k.dedupe(user_id, str(rec["event_id"])) for rec in self.archive.iter_events(INTERACTIONS)
                   if rec.get("user_id") == user_id and rec.get("event_id")]
        removed = int(self.r.delete(k.history(user_id), k.seen(user_id), k.impressions(user_id),
                                    k.user_features(user_id), k.user(user_id), *markers))
        self._announce("user", pseudonym(self.settings.tenancy.tenant, "user", user_id))
        return removed

    def _user_feast(self, user_id: str) -> int:
        return int(self.r.delete(entity_key(USER_REALTIME.join_key, user_id, self.settings.feast.project)))

    def _user_archive(self, user_id: str) -> int:
        return self._rewrite(None, lambda rec: rec.get("user_id") == user_id)

    def _tombstone(self, user_id: str) -> int:
        if self.producer is None:
            raise RuntimeError("no Kafka producer: the feeds topic's tombstone cannot be written")
        self.producer.send(self.topics.feeds, key=user_id.encode(), value=None).get(timeout=30)
        return 1

    def _user_sql(self, user_id: str) -> int:
        return scrub_user([self.settings.database_url, control_url(self.settings)], user_id)

    def _announce(self, kind: str, ident: str) -> None:
        """Tell every serving process of the tenant (``services.pipeline.forgotten``)."""
        self.r.xadd(self.keys.forgotten, {"kind": kind, "id": ident}, maxlen=ANNOUNCED, approximate=True)

    # ---- items ---------------------------------------------------------------------------------
    def _item_online(self, item_id: str) -> int:
        self._write_stub(item_id)
        k = self.keys
        removed = int(self.r.delete(k.covisit(item_id), k.linear(item_id), k.vector(item_id),
                                    k.item_features(item_id)))
        # this tenant's keys only: each starts with its prefix and a hash tag (another tenant's prefix
        # extends this one's, "sr:" -> "sr:acme:")
        for key in self.r.scan_iter(match=f"{_glob(k.prefix)}{{*", count=1000):
            kind = self.r.type(key)
            if kind == b"zset":
                removed += int(self.r.zrem(key, item_id))
            elif kind == b"set" and key != k.active_items.encode():
                removed += int(self.r.srem(key, item_id))
        self._announce("item", item_id)
        return removed

    @staticmethod
    def _stub(item_id: str) -> ItemUpsert:
        now = time.time()
        return ItemUpsert(item_id=item_id, created_at=now, active=False, timestamp=now)

    def _write_stub(self, item_id: str) -> None:
        """The item as the worker would apply an upsert with ``active = false`` and no content."""
        stub = self._stub(item_id)

        async def run() -> None:
            target = resp.connect(self.settings.redis.url or "", 2.0, 30.0)
            try:
                w = OnlineWriter(target, self.keys, effect_params(self.settings), 3600,
                                 tf.TransformParams.from_settings(self.settings))
                await w.apply_items([(None, stub)], {}, {}, {}, StatsDelta("items"))
            finally:
                await target.close()

        asyncio.run(run())

    def _item_feast(self, item_id: str) -> int:
        return int(self.r.delete(entity_key(ITEM_REALTIME.join_key, item_id, self.settings.feast.project)))

    def _item_archive(self, item_id: str) -> int:
        return self._rewrite(ITEMS, lambda rec: rec.get("item_id") == item_id)

    def _item_catalog(self, item_id: str) -> int:
        """The inactive stub on the compacted ``items`` topic, under the item's key: compaction drops
        the item's earlier records (its text), and a worker replaying the topic applies the stub last,
        so a replay never brings the item back."""
        if self.producer is None:
            raise RuntimeError("no Kafka producer: the items topic's stub cannot be written")
        self.producer.send(self.topics.items, key=item_id.encode(), value=encode(self._stub(item_id))
                           ).get(timeout=30)
        return 1

    def _item_feeds(self, item_id: str) -> int:
        if self.producer is None:
            raise RuntimeError("no Kafka producer: the feeds holding the item cannot be rewritten")
        time.sleep(FEEDS_GRACE_S)
        return rewrite_feeds(self.settings, self.producer, item_id)

    # ---- Feast's offline (batch source) parquet ------------------------------------------------
    def _offline(self, join_key: str) -> Callable[[str], int]:
        """Rows of the subject in Feast's batch-source files (``data_dir/offline``, one per view)."""
        def erase(subject: str) -> int:
            removed = 0
            for path in sorted(self.settings.data_dir.joinpath("offline").rglob("*.parquet")):
                table = pq.read_table(path)
                if join_key not in table.column_names:
                    continue
                keep = [v != subject for v in table.column(join_key).to_pylist()]
                if not all(keep):
                    removed += keep.count(False)
                    _replace(path, table.filter(pa.array(keep)))
            return removed

        return erase

    # ---- archive -------------------------------------------------------------------------------
    def _rewrite(self, topic: str | None, match: Callable[[dict[str, Any]], bool]) -> int:
        """Rewrite every archive file (of base topic ``topic``, or of every topic) without the matching
        records; a file left empty is deleted. Returns the records removed."""
        root = self.archive.root
        dirs = [root / f"topic={topic}"] if topic else sorted(root.glob("topic=*"))
        removed = 0
        for path in (f for d in dirs for f in sorted(d.glob("date=*/*.parquet"))):
            table = pq.read_table(path)
            keep = [not match(json.loads(p)) for p in table.column("payload").to_pylist()]
            if all(keep):
                continue
            removed += keep.count(False)
            if not any(keep):
                path.unlink()
                continue
            _replace(path, table.filter(pa.array(keep)))
        return removed


def _replace(path: Path, table: pa.Table) -> None:
    tmp = path.with_name(f".{path.name}.erase.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def _glob(text: str) -> str:
    """``text`` with Redis glob characters escaped."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)
