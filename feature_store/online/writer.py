"""Applies a batch to Redis atomically: dedupe markers, effects, stats and offsets in ONE MULTI/EXEC.

Optimistic concurrency: the batch WATCHes its dedupe keys, offset watermarks and the user state it
read, so a zombie worker that still holds a revoked partition cannot apply the same events twice.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from core.events import Interaction, ItemUpsert, UserUpsert
from core.features import ITEM_REALTIME, USER_AFFINITY, USER_REALTIME
from feature_store import transforms as tf
from feature_store.online.effects import EffectParams, UserState, decode_history, plan_interactions
from feature_store.online.keys import Keys
from feature_store.online.plan import Plan

TP = tuple[str, int]
BeforeCommit = Callable[[Sequence[Interaction], Mapping[str, list[str]]], Awaitable[None]]
_ZINCR = "for i=1,#ARGV,2 do redis.call('ZINCRBY', KEYS[1], ARGV[i+1], ARGV[i]) end"
_HINCR = "for i=1,#ARGV,2 do redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i+1]) end"
_MARK = "for i=2,#ARGV do redis.call('SET', ARGV[i], '1', 'EX', ARGV[1]) end"
_ZCAP = "redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[1]) + 1))"


@dataclass
class Applied:
    fresh: int = 0
    duplicates: int = 0
    retries: int = 0


@dataclass
class Snapshot:
    """State read (under WATCH) before planning a batch."""

    users: dict[str, UserState] = field(default_factory=dict)
    categories: dict[str, list[str]] = field(default_factory=dict)
    user_features: dict[str, tf.UserState] = field(default_factory=dict)
    item_features: dict[str, tf.ItemState] = field(default_factory=dict)


@dataclass
class StatsDelta:
    """Counters of one batch for one input topic (``base`` = interactions/items/users)."""

    base: str
    processed: int = 0
    dead_lettered: int = 0
    dead_by_reason: dict[str, int] | None = None


class OnlineWriter:
    """The worker's write side. ``r`` must be a ``redis.asyncio.Redis`` with decode_responses=True."""

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
        users = sorted({e.user_id for e in events})
        items = sorted({e.item_id for e in events})
        watch = [*ids, *self._offset_keys(offsets), *(self.keys.history(u) for u in users),
                 *(self.keys.impressions(u) for u in users), *(self.keys.user_features(u) for u in users),
                 *(self.keys.item_features(i) for i in items)]
        async with self.r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(*watch)
                    fresh = await self._fresh(events, ids)
                    snap = await self._snapshot(fresh)
                    plan = plan_interactions(fresh, snap.users, snap.categories, self.params, self.keys)
                    self._plan_features(plan, fresh, snap)
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

    def _plan_features(self, plan: Plan, fresh: Sequence[Interaction], snap: Snapshot) -> None:
        """FEATURES' pure transforms folded over the fresh events; states stored in the same EXEC."""
        for ev in fresh:
            cats = snap.categories.get(ev.item_id, [])
            tf.apply_user_event(snap.user_features[ev.user_id], ev, cats, self.tparams)
            tf.apply_item_event(snap.item_features[ev.item_id], ev)
        for u, us in snap.user_features.items():
            plan.setex[self.keys.user_features(u)] = (tf.dumps_user(us), None)
        for i, st in snap.item_features.items():
            plan.setex[self.keys.item_features(i)] = (tf.dumps_item(st), None)

    async def _fresh(self, events: Sequence[Interaction], ids: Sequence[str]) -> list[Interaction]:
        marks = await self.r.mget(list(ids)) if ids else []
        seen: set[str] = set()
        out = []
        for ev, mark in zip(events, marks, strict=True):
            if mark is None and ev.event_id not in seen:
                out.append(ev)
            seen.add(ev.event_id)
        return out

    async def _snapshot(self, fresh: Sequence[Interaction]) -> Snapshot:
        users = sorted({e.user_id for e in fresh})
        items = sorted({e.item_id for e in fresh})
        fields = {u: sorted({f"{e.feed_id}:{e.position}" for e in fresh if e.user_id == u
                             and e.feed_id is not None and e.position is not None}) for u in users}
        async with self.r.pipeline(transaction=False) as rp:
            for u in users:
                rp.lrange(self.keys.history(u), 0, -1)
                rp.hmget(self.keys.impressions(u), fields[u]) if fields[u] else rp.exists("")
                rp.get(self.keys.user_features(u))
            for i in items:
                rp.hget(self.keys.item(i), "categories")
                rp.get(self.keys.item_features(i))
            res = await rp.execute()
        snap = Snapshot()
        for n, u in enumerate(users):
            hist, imps, feats = res[3 * n: 3 * n + 3]
            rec = {f: v for f, v in zip(fields[u], imps, strict=True) if v is not None} if fields[u] else {}
            snap.users[u] = UserState(decode_history(hist), rec)
            snap.user_features[u] = tf.loads_user(feats, u)
        rest = res[3 * len(users):]
        for n, i in enumerate(items):
            cats, feats = rest[2 * n: 2 * n + 2]
            snap.categories[i] = json.loads(cats) if cats else []
            snap.item_features[i] = tf.loads_item(feats, i)
        return snap

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
        self._queue_additive(pipe, plan)
        for key, mapping in plan.hset.items():
            pipe.hset(key, mapping=dict(mapping))  # type: ignore[arg-type]
        for key, values in plan.lists.items():
            pipe.delete(key)
            pipe.rpush(key, *values)
        for key, add in plan.sadd.items():
            pipe.sadd(key, *add)
        for key, rem in plan.srem.items():
            pipe.srem(key, *rem)
        for key, zmap in plan.zadd.items():
            pipe.zadd(key, dict(zmap))  # type: ignore[arg-type]
        for key, zmembers in plan.zrem.items():
            pipe.zrem(key, *zmembers)
        for key, (value, ttl) in plan.setex.items():
            pipe.set(key, value, ex=ttl)
        for key, secs in plan.expire.items():
            pipe.expire(key, secs)
        if marks:
            pipe.eval(_MARK, 0, self.ttl, *marks)

    @staticmethod
    def _queue_additive(pipe: Pipeline, plan: Plan) -> None:
        for key, members in plan.zincr.items():
            pipe.eval(_ZINCR, 1, key, *[x for m, v in members.items() for x in (m, repr(v))])
        for key, fields in plan.hincr.items():
            pipe.eval(_HINCR, 1, key, *[x for f, v in fields.items() for x in (f, repr(v))])
        for key, cap in plan.zcap.items():
            pipe.eval(_ZCAP, 1, key, cap)

    def _offset_keys(self, offsets: Mapping[TP, int]) -> list[str]:
        return [self.keys.watermark(t, p) for t, p in offsets]

    def _queue_bookkeeping(self, pipe: Pipeline, offsets: Mapping[TP, int], stats: StatsDelta,
                           duplicates: int) -> None:
        for (topic, part), off in offsets.items():
            pipe.set(self.keys.watermark(topic, part), off)
        base = stats.base
        incr = {f"{base}:processed": stats.processed, f"{base}:dead_lettered": stats.dead_lettered,
                f"{base}:duplicates": duplicates, "events_processed": stats.processed,
                "events_dead_lettered": stats.dead_lettered}
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
                    plan = plan_items(items, vectors, self.keys)
                    for it in items:
                        tf.apply_item_upsert(states[it.item_id], it)
                    for i, st in states.items():
                        plan.setex[self.keys.item_features(i)] = (tf.dumps_item(st), None)
                    pipe.multi()
                    self._queue(pipe, plan, [])
                    self._queue_bookkeeping(pipe, offsets, stats, 0)
                    await pipe.execute()
                    return
                except WatchError:
                    await asyncio.sleep(0.01)


def plan_items(items: Sequence[ItemUpsert], vectors: Mapping[str, bytes], keys: Keys) -> Plan:
    """Catalog records, content vectors and the fresh pool; an inactive item leaves the pools."""
    plan = Plan()
    for it in items:
        plan.hset[keys.item(it.item_id)] = {
            "title": it.title, "text": it.text, "categories": json.dumps(it.categories),
            "attributes": json.dumps(it.attributes), "created_at": repr(it.created_at),
            "active": "1" if it.active else "0", "updated_at": repr(it.timestamp)}
        if it.item_id in vectors:
            plan.setex[keys.vector(it.item_id)] = (vectors[it.item_id], None)
        if it.active:
            plan.zadd[keys.fresh][it.item_id] = it.created_at
            plan.sadd[keys.active_items].add(it.item_id)
            plan.zrem[keys.fresh].discard(it.item_id)
            plan.srem[keys.active_items].discard(it.item_id)
        else:
            plan.zrem[keys.fresh].add(it.item_id)
            plan.srem[keys.active_items].add(it.item_id)
            plan.zadd[keys.fresh].pop(it.item_id, None)
            plan.sadd[keys.active_items].discard(it.item_id)
    _drop_empty(plan)
    return plan


def plan_users(users: Sequence[UserUpsert], keys: Keys) -> Plan:
    plan = Plan()
    for u in users:
        plan.hset[keys.user(u.user_id)] = {"attributes": json.dumps(u.attributes),
                                           "segment": u.segment or "", "updated_at": repr(u.timestamp)}
    return plan


def _drop_empty(plan: Plan) -> None:
    for mapping in (plan.zadd, plan.zrem, plan.sadd, plan.srem):
        for key in [k for k, v in mapping.items() if not v]:
            del mapping[key]
