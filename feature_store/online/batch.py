"""The worker's batch planning, transport-free: what a batch of events changes in the online state.

Both stores apply exactly these plans: the stream worker's Redis writer (``writer.OnlineWriter``, Lua
scripts per hash tag) and the in-process store that the training job and the evaluation replay events into
(``memory_state.MemoryOnline``). So a replay goes through the worker's own transforms.

Reading the snapshot a plan needs is store-specific; :class:`SnapshotRequest` says what to read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from core.events import Interaction, ItemUpsert, UserUpsert
from core.settings import Settings
from feature_store import transforms as tf
from feature_store.online.bandit_effects import BanditParams
from feature_store.online.effects import EffectParams, Keep, UserState, engaged, plan_interactions
from feature_store.online.item_merge import ItemDelta
from feature_store.online.keys import Keys
from feature_store.online.plan import Plan


def effect_params(settings: Settings) -> EffectParams:
    w, b = settings.worker, settings.bandit
    return EffectParams(
        history_len=w.profile_len, popularity_half_life_s=w.popularity_half_life_s,
        trending_half_life_s=w.trending_half_life_s, affinity_half_life_s=w.affinity_half_life_s,
        covisit_window_s=w.covisit_window_s, covisit_cap=w.covisit_cap, covisit_history=w.covisit_history,
        covisit_backward=w.covisit_backward,
        segment_keys=tuple(w.segment_keys),
        bandit=BanditParams(segment_key=b.segment_key, impression_ttl_s=w.impression_ttl_s))


@dataclass
class Snapshot:
    """State read before planning a batch."""

    users: dict[str, UserState] = field(default_factory=dict)
    categories: dict[str, list[str]] = field(default_factory=dict)
    user_features: dict[str, tf.UserState] = field(default_factory=dict)


@dataclass(frozen=True)
class SnapshotRequest:
    """What to read for a batch: feature states of ``users``, the categories of ``items``, the
    newest ``history_n`` history entries of ``hist_users``, the impression fields clicks refer to."""

    users: list[str]
    items: list[str]
    hist_users: list[str]
    impression_fields: dict[str, list[str]]
    history_n: int

    @classmethod
    def for_events(cls, fresh: Sequence[Interaction], params: EffectParams) -> SnapshotRequest:
        wanted: dict[str, set[str]] = {}
        for e in fresh:
            if e.feed_id is not None and e.position is not None:
                wanted.setdefault(e.user_id, set()).add(f"{e.feed_id}:{e.position}")
        return cls(sorted({e.user_id for e in fresh}), sorted({e.item_id for e in fresh}),
                   sorted({e.user_id for e in fresh if engaged(e)}),
                   {u: sorted(f) for u, f in wanted.items()}, params.covisit_history)


def plan_interaction_batch(fresh: Sequence[Interaction], snap: Snapshot, params: EffectParams,
                           tparams: tf.TransformParams, keys: Keys, keep: Keep | None = None) -> Plan:
    """Every effect of ``fresh`` (deduplicated, in partition order): the effects, FEATURES' user
    states folded over the events (binary, ``fs:user``) and the item states' deltas (merged in place,
    ``fs:item``). ``keep`` filters the shared writes (see ``effects.Keep``)."""
    plan = plan_interactions(fresh, snap.users, snap.categories, params, keys, keep)
    for ev in fresh:
        tf.apply_user_event(snap.user_features[ev.user_id], ev, snap.categories.get(ev.item_id, []), tparams)
        fkey = keys.item_features(ev.item_id)
        if keep is None or keep(ev, fkey):
            delta = plan.imerge.get(fkey)
            if delta is None:
                delta = plan.imerge[fkey] = ItemDelta()
            delta.add_event(ev)
    for user in dict.fromkeys(ev.user_id for ev in fresh):
        plan.setex[keys.user_features(user)] = (tf.encode_user(snap.user_features[user]), None)
    return plan


def plan_item_batch(items: Sequence[ItemUpsert], vectors: Mapping[str, bytes], keys: Keys,
                    keep: Keep | None = None) -> Plan:
    """Catalog records, content vectors, pools and the items' feature states (created_at). The other
    writes are absolute (a replay rewrites the same values); ``keep`` filters the state merges."""
    plan = plan_items(items, vectors, keys)
    for it in items:
        fkey = keys.item_features(it.item_id)
        if keep is None or keep(it, fkey):
            plan.imerge.setdefault(fkey, ItemDelta()).add_upsert(it)
    return plan


def plan_items(items: Sequence[ItemUpsert], vectors: Mapping[str, bytes], keys: Keys) -> Plan:
    """Catalog records, content vectors and the fresh pool; an inactive item leaves the pools."""
    plan = Plan()
    if items:
        plan.hincr[keys.catalog_version]["items"] += 1
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
