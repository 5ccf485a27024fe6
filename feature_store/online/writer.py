"""Applies a batch to Redis atomically: dedupe markers, effects, stats and offsets in ONE MULTI/EXEC."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from core.events import Interaction, ItemUpsert
from core.features import ITEM_REALTIME, USER_AFFINITY, USER_REALTIME
from feature_store import transforms as tf
from feature_store.online.batch import Snapshot, SnapshotRequest, plan_interaction_batch, plan_item_batch
from feature_store.online.effects import EffectParams, UserState, decode_history
from feature_store.online.keys import Keys
from feature_store.online.plan import Plan

TP = tuple[str, int]
BeforeCommit = Callable[[Sequence[Interaction], Mapping[str, list[str]]], Awaitable[None]]
# One script applies a whole plan from a JSON payload: encoding one argument instead of ~30 per
# event is what makes the batch cheap in Python. Increments travel as repr() strings (exact).
_APPLY = """
local p = cjson.decode(ARGV[1])
for key, m in pairs(p.z) do for member, v in pairs(m) do redis.call('ZINCRBY', key, v, member) end end
for key, m in pairs(p.h) do for f, v in pairs(m) do redis.call('HINCRBYFLOAT', key, f, v) end end
for key, cap in pairs(p.c) do redis.call('ZREMRANGEBYRANK', key, 0, -(cap + 1)) end
for key, m in pairs(p.hs) do for f, v in pairs(m) do redis.call('HSET', key, f, v) end end
for key, l in pairs(p.lp) do for _, v in ipairs(l) do redis.call('LPUSH', key, v) end end
for key, n in pairs(p.lt) do redis.call('LTRIM', key, 0, n - 1) end
for key, l in pairs(p.sa) do for _, v in ipairs(l) do redis.call('SADD', key, v) end end
for key, v in pairs(p.v) do redis.call('SET', key, v) end
for key, n in pairs(p.x) do redis.call('EXPIRE', key, n) end
for _, key in ipairs(p.d) do redis.call('SET', key, '1', 'EX', p.ttl) end
return 1
"""


@dataclass
class Applied:
    fresh: int = 0
    duplicates: int = 0
    retries: int = 0


@dataclass
class StatsDelta:
    """Counters of one batch for one input topic (``base`` = interactions/items/users)."""

    base: str
    processed: int = 0
    dead_lettered: int = 0
    dead_by_reason: dict[str, int] | None = None
    skipped: int = 0  # invalid records whose dead letter the broker refused for good


class OnlineWriter:
    """The worker's write side. Optimistic concurrency: a batch WATCHes the offset watermarks of its
    partitions and the shared item states it read, so a zombie worker cannot apply a batch twice.
    ``r`` must be a ``redis.asyncio.Redis`` with decode_responses=True."""

    def __init__(self, r: Redis, keys: Keys, params: EffectParams, dedupe_ttl_s: int,
                 tparams: tf.TransformParams | None = None) -> None:
        self.r, self.keys, self.params, self.ttl = r, keys, params, dedupe_ttl_s
        self.tparams = tparams or tf.TransformParams()

    async def watermarks(self, tps: Sequence[TP]) -> dict[TP, int]:
        vals = await self.r.mget([self.keys.watermark(t, p) for t, p in tps]) if tps else []
        return {tp: int(v) if v is not None else -1 for tp, v in zip(tps, vals, strict=True)}

    async def apply_interactions(self, events: Sequence[Interaction], offsets: Mapping[TP, int],
                                 stats: StatsDelta, before_commit: BeforeCommit | None = None) -> Applied:
        """Dedupe, plan and apply ``events`` with offsets and stats in one transaction (retried on
        a concurrent change). ``before_commit(fresh, categories)`` runs before EXEC (the archive)."""
        result = Applied()
        if not events and not offsets:
            return result
        ids = [self.keys.dedupe(e.event_id) for e in events]
        items = sorted({e.item_id for e in events})
        # User state is partition-owned: a zombie that still holds a revoked partition is fenced by
        # that partition's watermark. Item feature states are shared by all partitions: watched.
        watch = [*self._offset_keys(offsets), *(self.keys.item_features(i) for i in items)]
        async with self.r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(*watch)
                    fresh = await self._fresh(events, ids)
                    snap = await self._snapshot(SnapshotRequest.for_events(fresh, self.params))
                    plan = plan_interaction_batch(fresh, snap, self.params, self.tparams, self.keys)
                    if before_commit is not None:
                        await before_commit(fresh, snap.categories)
                    pipe.multi()
                    self._queue(pipe, plan, [self.keys.dedupe(e.event_id) for e in fresh])
                    self._queue_bookkeeping(pipe, offsets, stats, len(events) - len(fresh))
                    await pipe.execute()
                    result.fresh, result.duplicates = len(fresh), len(events) - len(fresh)
                    return result
                except WatchError:
                    result.retries += 1
                    await asyncio.sleep(0.01 * min(result.retries, 20))

    async def _fresh(self, events: Sequence[Interaction], ids: Sequence[str]) -> list[Interaction]:
        marks = await self.r.mget(list(ids)) if ids else []
        seen: set[str] = set()
        out = []
        for ev, mark in zip(events, marks, strict=True):
            if mark is None and ev.event_id not in seen:
                out.append(ev)
            seen.add(ev.event_id)
        return out

    async def _snapshot(self, req: SnapshotRequest) -> Snapshot:
        """One pipeline: engaged users' recent history, the impression records clicks refer to,
        item categories, and FEATURES' user/item states (two MGETs)."""
        users, items, hist_users, fields = req.users, req.items, req.hist_users, req.impression_fields
        async with self.r.pipeline(transaction=False) as rp:
            rp.mget([self.keys.user_features(u) for u in users])
            rp.mget([self.keys.item_features(i) for i in items])
            for u in hist_users:
                rp.lrange(self.keys.history(u), 0, req.history_n - 1)
            for u, fs in fields.items():
                rp.hmget(self.keys.impressions(u), fs)
            for i in items:
                rp.hget(self.keys.item(i), "categories")
            res = await rp.execute()
        ufeats, ifeats, rest = res[0], res[1], res[2:]
        hists = dict(zip(hist_users, rest[: len(hist_users)], strict=True))
        imps = dict(zip(fields, rest[len(hist_users): len(hist_users) + len(fields)], strict=True))
        cats = rest[len(hist_users) + len(fields):]
        snap = Snapshot()
        for u, raw in zip(users, ufeats, strict=True):
            rec = {f: v for f, v in zip(fields.get(u, []), imps.get(u, []), strict=True) if v is not None}
            snap.users[u] = UserState(decode_history(hists.get(u, [])), rec)
            snap.user_features[u] = tf.loads_user(raw, u)
        for i, c, raw in zip(items, cats, ifeats, strict=True):
            snap.categories[i] = json.loads(c) if c else []
            snap.item_features[i] = tf.loads_item(raw, i)
        return snap

    async def categories(self, item_ids: Sequence[str]) -> dict[str, list[str]]:
        async with self.r.pipeline(transaction=False) as rp:
            for i in item_ids:
                rp.hget(self.keys.item(i), "categories")
            res = await rp.execute()
        return {i: json.loads(c) if c else [] for i, c in zip(item_ids, res, strict=True)}

    async def feature_rows(self, user_ids: Sequence[str], item_ids: Sequence[str]) -> dict[str, list[tf.Row]]:
        """Absolute feature rows (projections of the stored states) per Feast stream view."""
        users = await self.r.mget([self.keys.user_features(u) for u in user_ids]) if user_ids else []
        items = await self.r.mget([self.keys.item_features(i) for i in item_ids]) if item_ids else []
        ustates = [tf.loads_user(raw, u) for u, raw in zip(user_ids, users, strict=True) if raw]
        istates = [tf.loads_item(raw, i) for i, raw in zip(item_ids, items, strict=True) if raw]
        return {USER_REALTIME.view: [tf.project_user_realtime(s) for s in ustates],
                USER_AFFINITY.view: [tf.project_user_affinity(s, params=self.tparams) for s in ustates],
                ITEM_REALTIME.view: [tf.project_item_realtime(s) for s in istates]}

    def _queue(self, pipe: Pipeline, plan: Plan, marks: Sequence[str]) -> None:
        text = {k: v for k, (v, ttl) in plan.setex.items() if isinstance(v, str) and ttl is None}
        payload = {
            "z": {k: {m: repr(v) for m, v in ms.items()} for k, ms in plan.zincr.items()},
            "h": {k: {f: repr(v) for f, v in fs.items()} for k, fs in plan.hincr.items()},
            "c": plan.zcap, "hs": plan.hset, "lp": plan.lpush, "lt": plan.ltrim,
            "sa": {k: sorted(v) for k, v in plan.sadd.items()}, "v": text, "x": plan.expire,
            "d": list(marks), "ttl": self.ttl}
        pipe.eval(_APPLY, 0, json.dumps(payload, separators=(",", ":")))
        for key, values in plan.lists.items():
            pipe.delete(key)
            pipe.rpush(key, *values)
        for key, rem in plan.srem.items():
            pipe.srem(key, *rem)
        for key, zmap in plan.zadd.items():
            pipe.zadd(key, dict(zmap))  # type: ignore[arg-type]
        for key, zmembers in plan.zrem.items():
            pipe.zrem(key, *zmembers)
        for key, (value, ttl) in plan.setex.items():
            if key not in text:
                pipe.set(key, value, ex=ttl)

    def _offset_keys(self, offsets: Mapping[TP, int]) -> list[str]:
        return [self.keys.watermark(t, p) for t, p in offsets]

    def _queue_bookkeeping(self, pipe: Pipeline, offsets: Mapping[TP, int], stats: StatsDelta,
                           duplicates: int) -> None:
        for (topic, part), off in offsets.items():
            pipe.set(self.keys.watermark(topic, part), off)
        base = stats.base
        incr = {f"{base}:processed": stats.processed, f"{base}:dead_lettered": stats.dead_lettered,
                f"{base}:duplicates": duplicates, "events_processed": stats.processed,
                "events_dead_lettered": stats.dead_lettered, f"{base}:skipped": stats.skipped,
                "events_skipped": stats.skipped}
        for reason, n in (stats.dead_by_reason or {}).items():
            incr[f"{stats.base}:dlq:{reason}"] = n
        for name, n in incr.items():
            if n:
                pipe.hincrby(self.keys.stats, name, n)

    async def apply_plan(self, plan: Plan, offsets: Mapping[TP, int], stats: StatsDelta) -> None:
        """Absolute (idempotent) effects such as user upserts, with offsets and stats, atomically."""
        async with self.r.pipeline(transaction=True) as pipe:
            self._queue(pipe, plan, [])
            self._queue_bookkeeping(pipe, offsets, stats, 0)
            await pipe.execute()

    async def apply_items(self, items: Sequence[ItemUpsert], vectors: Mapping[str, bytes],
                          offsets: Mapping[TP, int], stats: StatsDelta) -> None:
        """Catalog, vectors, pools and the items' feature state (created_at), atomically."""
        ids = sorted({it.item_id for it in items})
        fkeys = [self.keys.item_features(i) for i in ids]
        if not fkeys:
            await self.apply_plan(Plan(), offsets, stats)
            return
        async with self.r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(*fkeys)
                    raw = await self.r.mget(fkeys) if fkeys else []
                    states = {i: tf.loads_item(v, i) for i, v in zip(ids, raw, strict=True)}
                    plan = plan_item_batch(items, vectors, states, self.keys)
                    pipe.multi()
                    self._queue(pipe, plan, [])
                    self._queue_bookkeeping(pipe, offsets, stats, 0)
                    await pipe.execute()
                    return
                except WatchError:
                    await asyncio.sleep(0.01)

