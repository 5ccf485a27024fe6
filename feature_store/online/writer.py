"""Applies batches to Redis, effectively once, on one Redis or a Redis Cluster.

A batch's plan (``batch``) is compiled to ops (``plan.ops``) and shipped to ONE Lua script per hash
tag (``keys``): the script declares every key it touches, checks a guard, applies the ops, moves
the guard. Redis runs a script atomically, so:

* on one Redis, the whole batch (shared writes, the users' writes, dedupe markers, stats) is one
  script guarded by the partitions' watermarks (compare-and-set: a zombie that lost its partitions
  finds them moved and applies nothing);
* on a Redis Cluster a script may only touch one slot, so a batch is one script per tag, atomic per
  shard, in three steps: the shared writes (popularity, co-visitation, bandit tables, item states),
  then the users' own writes with their dedupe markers, then the watermarks and stats. Each shard
  keeps, per stage and partition, the offset its writes are applied up to (``aw``, compare-and-set
  like the watermarks, only ever moved forward). A batch that crashed half-way is replayed: its
  events' dedupe markers hold their own coordinates when their user's writes were applied (not
  fresh, not duplicates), and the shared writes of the other events skip the shards that already
  have them (``effects.Keep``).

Planning reads the snapshot in one pipelined round trip. Users' states are owned by the partition
that carries them; item states are merged in place (``item_merge``), so no lock is needed across
workers.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from core.events import Interaction, ItemUpsert, UserUpsert
from feature_store import transforms as tf
from feature_store.online import script
from feature_store.online.batch import SnapshotRequest, plan_interaction_batch, plan_item_batch, plan_users
from feature_store.online.effects import EffectParams, Keep
from feature_store.online.keys import SHARDS, Keys, tag
from feature_store.online.plan import OWNED, SHARED, Op, Plan, flat_pairs, group_of, grouped, ops
from feature_store.online.reads import TP, StateReads, field_of
from feature_store.online.resp import Target
from feature_store.online.script import Conflict

__all__ = ["TP", "Applied", "Conflict", "Coord", "OnlineWriter", "StatsDelta"]
T = TypeVar("T")


@dataclass(frozen=True)
class Coord:
    """Where a record came from: ``tp`` = (``topic@<topic id>``, partition)."""

    tp: TP
    offset: int

    def marker(self) -> str:
        return f"{self.offset}:{self.tp[1]}:{_topic_crc(self.tp[0])}"


@functools.lru_cache(maxsize=1024)
def _topic_crc(topic: str) -> str:
    """The low 16 bits of the topic's crc32, in hex (once per topic, not per event)."""
    return f"{zlib.crc32(topic.encode()) & 0xFFFF:x}"


@dataclass
class StatsDelta:
    """Counters of one batch for one input topic (``base`` = interactions/items/users)."""

    base: str
    processed: int = 0
    dead_lettered: int = 0
    dead_by_reason: dict[str, int] | None = None
    skipped: int = 0  # invalid records whose dead letter the broker refused for good
    replayed: int = 0  # records delivered again at or below the watermark (after a crash or rebalance)


@dataclass
class Applied:
    fresh: list[Interaction] = field(default_factory=list)
    earlier: list[Interaction] = field(default_factory=list)  # applied by an attempt that crashed
    duplicates: int = 0
    categories: dict[str, list[str]] = field(default_factory=dict)
    user_states: dict[str, tf.UserState] = field(default_factory=dict)  # after the batch
    user_bytes: dict[str, bytes] = field(default_factory=dict)  # the same states, as written


@dataclass
class _Batch:
    """One apply: the plan's ops by (stage, tag), the stats, and the guards' old and new values."""

    groups: dict[tuple[str, str], list[Op]]
    stats: list[tuple[str, int]]
    offsets: Mapping[TP, int]
    marks: Mapping[TP, int]


class OnlineWriter(StateReads):
    """The worker's write side over a :mod:`resp` target (one Redis or a cluster)."""

    def __init__(self, client: Target, keys: Keys, params: EffectParams, dedupe_ttl_s: int,
                 tparams: tf.TransformParams | None = None) -> None:
        super().__init__(client, keys)
        self.params, self.ttl = params, dedupe_ttl_s
        self.tparams = tparams or tf.TransformParams()
        self._aw: dict[tuple[str, str, TP], int] = {}  # (stage, tag, tp) -> applied offset (cluster)
        self._marks: dict[TP, int] = {}  # watermarks as this writer last read or moved them

    async def watermarks(self, tps: Sequence[TP]) -> dict[TP, int]:
        """The partitions' watermarks; those this writer moved (or read) since the last error,
        Conflict or rebalance from memory, without a round trip. A watermark only moves through this
        writer's guarded scripts while it owns the partition: a cached value that is stale (another
        owner moved it) fails the next script's guard (Conflict: dropped, read again); any error of
        Redis drops them all, so a Redis that restarted with older data is read again."""
        missing = [tp for tp in tps if tp not in self._marks]
        if missing:
            self._marks.update(await self._fresh(super().watermarks(missing)))
        return {tp: self._marks[tp] for tp in tps}

    # ---- interactions ------------------------------------------------------------------------------
    async def apply_interactions(self, events: Sequence[tuple[Coord | None, Interaction]],
                                 offsets: Mapping[TP, int], marks: Mapping[TP, int],
                                 stats: StatsDelta) -> Applied:
        """Dedupe, plan and apply ``events`` (valid, above the watermarks ``marks``, in partition
        order), then move the watermarks to ``offsets`` and count ``stats``. Raises Conflict."""
        await self._warm(offsets)
        evs = [ev for _, ev in events]
        req = SnapshotRequest.for_events(evs, self.params)
        dkeys = [self.keys.dedupe(ev.user_id, ev.event_id) for ev in evs]
        found, snap = await self._snapshot(req, dkeys)
        out = _classify(events, found)
        keep = self._keep(events, offsets)
        plan = plan_interaction_batch(out.fresh, snap, self.params, self.tparams, self.keys, keep)
        groups = self._groups(plan)
        coords = _first_coords(events)
        marks_by_tag: dict[str, list[tuple[str, str]]] = {}
        for ev in out.fresh:  # the markers go with their user's writes, one op per shard
            c = coords[id(ev)]
            marks_by_tag.setdefault(tag(ev.user_id) if self.r.cluster else "", []).append(
                (self.keys.dedupe(ev.user_id, ev.event_id), c.marker() if c else "1"))
        for where, marks_ in marks_by_tag.items():
            groups.setdefault((OWNED, where), []).append(("mk", marks_[0][0], (self.ttl, marks_)))
        await self._apply(_Batch(groups, _stats(stats, out.duplicates, len(out.earlier)), offsets, marks))
        out.categories = snap.categories
        out.user_states = {ev.user_id: snap.user_features[ev.user_id] for ev in out.fresh}
        out.user_bytes = {u: plan.setex[self.keys.user_features(u)][0]  # type: ignore[misc]
                          for u in out.user_states}
        self.keep_user_states((out.user_bytes[u], st) for u, st in out.user_states.items())
        return out

    async def apply_items(self, items: Sequence[tuple[Coord | None, ItemUpsert]],
                          vectors: Mapping[str, bytes], offsets: Mapping[TP, int], marks: Mapping[TP, int],
                          stats: StatsDelta) -> None:
        """Catalog, vectors, pools and the items' feature states (created_at)."""
        await self._warm(offsets)
        plan = plan_item_batch([it for _, it in items], vectors, self.keys, self._keep(items, offsets))
        await self._apply(_Batch(self._groups(plan), _stats(stats, 0), offsets, marks))

    async def apply_users(self, users: Sequence[UserUpsert], offsets: Mapping[TP, int],
                          marks: Mapping[TP, int], stats: StatsDelta) -> None:
        await self.apply_plan(plan_users(users, self.keys), offsets, marks, stats)

    async def apply_plan(self, plan: Plan, offsets: Mapping[TP, int] | None = None,
                         marks: Mapping[TP, int] | None = None, stats: StatsDelta | None = None) -> None:
        """Absolute (idempotent) effects, with watermarks and stats."""
        offsets = offsets or {}
        await self._warm(offsets)
        await self._apply(_Batch(self._groups(plan), _stats(stats, 0) if stats else [], offsets, marks or {}))

    # ---- guards ------------------------------------------------------------------------------------
    async def _warm(self, offsets: Mapping[TP, int]) -> None:
        """Cluster: read every shard's applied offsets of partitions not cached (a new owner)."""
        missing = [tp for tp in offsets if (SHARED, "{0}", tp) not in self._aw]
        if not self.r.cluster or not missing:
            return
        tags = [f"{{{n}}}" for n in range(SHARDS)]
        fields = [f"{stage}:{field_of(tp)}" for stage in (SHARED, OWNED) for tp in missing]
        res = await self.r.execute([self._cmd(self.keys.applied(t), "HMGET", *fields) for t in tags])
        for t, vals in zip(tags, res, strict=True):
            script.raise_error(vals)
            for j, v in enumerate(vals):
                stage, tp = (SHARED, OWNED)[j // len(missing)], missing[j % len(missing)]
                self._aw[(stage, t, tp)] = int(v) if v is not None else -1

    def _keep(self, events: Sequence[tuple[Coord | None, Any]], offsets: Mapping[TP, int]) -> Keep | None:
        """None unless some shard already has writes of these events (a half-applied batch)."""
        first: dict[TP, int] = {}
        for c, _ in events:
            if c is not None:
                first[c.tp] = min(first.get(c.tp, c.offset), c.offset)
        done = {(tag, tp): off for (stage, tag, tp), off in self._aw.items()
                if stage == SHARED and tp in first and off >= first[tp]}
        if not done:
            return None
        coords = _first_coords(events)

        def keep(ev: Any, key: str) -> bool:
            c = coords[id(ev)]
            return c is None or c.offset > done.get((group_of(key), c.tp), -1)

        return keep

    # ---- apply -------------------------------------------------------------------------------------
    def _groups(self, plan: Plan) -> dict[tuple[str, str], list[Op]]:
        """A cluster: the ops by (stage, tag), one script per shard and stage (``_apply``). A single
        Redis runs the whole batch in one script, atomically, and no op reads a key another writes,
        so the canonical order (``plan.ops``, the in-process store's) is kept as it is: one group,
        no key parsed."""
        if self.r.cluster:
            return grouped(plan)
        return {(SHARED, ""): list(ops(plan))}

    async def _apply(self, b: _Batch) -> None:
        await self._fresh(self._apply_batch(b))
        self._marks.update(b.offsets)

    async def _fresh(self, step: Awaitable[T]) -> T:
        """``step``'s result; on any error the cached watermarks are dropped first."""
        try:
            return await step
        except BaseException:
            self._marks.clear()
            raise

    async def _apply_batch(self, b: _Batch) -> None:
        if not self.r.cluster:
            ops = [op for stage in (SHARED, OWNED) for (s, _), g in b.groups.items() if s == stage
                   for op in g]
            ops += [("hb", self.keys.stats, flat_pairs(b.stats))] if b.stats else []
            await self._run([(self.keys.watermarks, _mark_guards(b), ops)])
            return
        for stage in (SHARED, OWNED):
            calls = []
            for (s, where), ops in b.groups.items():
                if s == stage:
                    guards = [(f"{stage}:{field_of(tp)}", *self._advance(stage, where, tp, off))
                              for tp, off in b.offsets.items()]
                    calls.append((self.keys.applied(where), guards, ops))
            await self._run(calls)
            self._moved(stage, b)
        control = [("hb", self.keys.stats, flat_pairs(b.stats))] if b.stats else []
        await self._run([(self.keys.watermarks, _mark_guards(b), control)])

    def _advance(self, stage: str, where: str, tp: TP, off: int) -> tuple[int, int]:
        """A shard's applied offset of ``tp``: the value it must hold, the value it moves to. It only
        grows: a shard may be ahead of this batch for ``tp`` (a crashed attempt applied more of ``tp``
        there, and ``keep`` left those writes out), and it is in this batch because of another
        partition's writes; moved back, the next batch would apply that crashed attempt's writes on
        the shard again."""
        old = self._aw.get((stage, where, tp), -1)
        return old, max(old, off)

    def _moved(self, stage: str, b: _Batch) -> None:
        for (s, where) in b.groups:
            if s == stage:
                for tp, off in b.offsets.items():
                    self._aw[(stage, where, tp)] = self._advance(stage, where, tp, off)[1]

    async def _run(self, calls: Sequence[script.Call]) -> None:
        try:
            await script.run(self.r, self._route, calls)
        except Conflict:
            self._aw.clear()
            raise

    def forget(self, tps: Iterable[TP] | None = None) -> None:
        """Drop cached shard offsets and watermarks (partitions revoked or assigned)."""
        self._marks.clear()
        if tps is None:
            self._aw.clear()
            return
        gone = set(tps)
        for k in [k for k in self._aw if k[2] in gone]:
            del self._aw[k]


def _mark_guards(b: _Batch) -> list[script.Guard]:
    """Every watermark the batch's records were sorted against (new or replayed): moved to the
    batch's offset, or held where every record was at or below it. A stale watermark (read from
    memory, see ``watermarks``) then fails a guard: no record is skipped as replayed on its word."""
    tps = {**dict.fromkeys(b.offsets, -1), **b.marks}
    return [(field_of(tp), old, b.offsets.get(tp, old)) for tp, old in tps.items()]


def _first_coords(events: Sequence[tuple[Coord | None, Any]]) -> dict[int, Coord | None]:
    """Coordinates by event object: its first delivery (a duplicate may be the very same object)."""
    out: dict[int, Coord | None] = {}
    for c, ev in events:
        out.setdefault(id(ev), c)
    return out


def _classify(events: Sequence[tuple[Coord | None, Interaction]], found: Sequence[Any]) -> Applied:
    out = Applied()
    seen: set[str] = set()
    for (c, ev), mark in zip(events, found, strict=True):
        first = ev.event_id not in seen
        seen.add(ev.event_id)
        if mark is None and first:
            out.fresh.append(ev)
        elif first and c is not None and mark.decode() == c.marker():
            out.earlier.append(ev)
        else:
            out.duplicates += 1
    return out


def _stats(stats: StatsDelta, duplicates: int, resumed: int = 0) -> list[tuple[str, int]]:
    """Exactly once with the watermarks (same script or guard), except ``replayed``, which counts
    every redelivery; ``resumed``: events a crashed attempt had applied (a cluster only)."""
    base = stats.base
    incr = {f"{base}:processed": stats.processed, f"{base}:dead_lettered": stats.dead_lettered,
            f"{base}:duplicates": duplicates, f"{base}:replayed": stats.replayed,
            f"{base}:resumed": resumed, "events_processed": stats.processed,
            "events_dead_lettered": stats.dead_lettered, f"{base}:skipped": stats.skipped,
            "events_skipped": stats.skipped}
    for reason, n in (stats.dead_by_reason or {}).items():
        incr[f"{base}:dlq:{reason}"] = n
    return [(name, n) for name, n in incr.items() if n]


