"""The reads of the worker's writer: watermarks, the snapshot a batch is planned on (one round trip),
item categories (cached until the catalog version moves) and FEATURES' states for Feast's rows."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from typing import Any

from feature_store import transforms as tf
from feature_store.online import item_merge
from feature_store.online.batch import Snapshot, SnapshotRequest
from feature_store.online.effects import UserState, decode_history
from feature_store.online.keys import Keys
from feature_store.online.plan import group_of
from feature_store.online.resp import Command, Target, pack, slot_of
from feature_store.online.script import raise_error

TP = tuple[str, int]
USER_STATES_KEPT = 10_000  # decoded user feature states kept by their stored bytes (~10 KB each at most)


class StateReads:
    def __init__(self, client: Target, keys: Keys) -> None:
        self.r, self.keys = client, keys
        self._slots: dict[str, int] = {}
        self._cats: dict[str, list[str]] = {}  # item categories, valid while the catalog version holds
        self._catalog: Any = None
        self._users: dict[str, tuple[bytes, tf.UserState]] = {}  # user -> (stored bytes, their state)

    def _route(self, key: str, args: Sequence[Any]) -> Command:
        """``args`` packed, routed to the slot of ``key``."""
        tag = group_of(key)
        slot = self._slots.get(tag)
        if slot is None:
            slot = self._slots[tag] = slot_of(tag)
        return slot, pack(*args)

    def _cmd(self, key: str, name: str, *args: Any) -> Command:
        """``name key args...``"""
        return self._route(key, (name, key, *args))

    async def watermarks(self, tps: Sequence[TP]) -> dict[TP, int]:
        if not tps:
            return {}
        fields = [field_of(tp) for tp in tps]
        (vals,) = await self.r.execute([self._cmd(self.keys.watermarks, "HMGET", *fields)])
        return {tp: int(v) if v is not None else -1 for tp, v in zip(tps, vals, strict=True)}

    def _mget(self, keys: Sequence[str]) -> tuple[list[Command], list[list[str]]]:
        """MGET commands and the keys each reads: one on a single Redis, one per tag on a cluster
        (it answers an MGET within one slot only)."""
        if not keys:
            return [], []
        if not self.r.cluster:
            return [self._cmd(keys[0], "MGET", *keys[1:])], [list(keys)]
        by_tag: dict[str, list[str]] = {}
        for k in keys:
            by_tag.setdefault(group_of(k), []).append(k)
        groups = list(by_tag.values())
        return [self._cmd(ks[0], "MGET", *ks[1:]) for ks in groups], groups

    async def _mget_values(self, keys: Sequence[str]) -> dict[str, Any]:
        if not keys:
            return {}
        cmds, groups = self._mget(keys)
        replies = await self.r.execute(cmds)
        for vals in replies:
            raise_error(vals)
        return _ungroup(groups, replies)

    async def categories(self, item_ids: Sequence[str]) -> dict[str, list[str]]:
        if not item_ids:
            return {}
        res = await self.r.execute([self._cmd(self.keys.item(i), "HGET", "categories") for i in item_ids])
        return {i: json.loads(c) if c else [] for i, c in zip(item_ids, res, strict=True)}

    async def feature_states(self, user_ids: Sequence[str], item_ids: Sequence[str]
                             ) -> tuple[dict[str, tf.UserState], dict[str, tf.ItemState]]:
        """FEATURES' states as stored (a user or item never seen has none)."""
        raw = await self._mget_values([self.keys.user_features(u) for u in user_ids])
        users = {u: tf.loads_user(raw[self.keys.user_features(u)], u) for u in user_ids
                 if raw.get(self.keys.user_features(u))}
        res = await self.r.execute([self._cmd(self.keys.item_features(i), "HGETALL") for i in item_ids]) \
            if item_ids else []
        items = {i: item_merge.item_state_flat(i, h) for i, h in zip(item_ids, res, strict=True) if h}
        return users, items

    async def _snapshot(self, req: SnapshotRequest, markers: Sequence[str]) -> tuple[list[Any], Snapshot]:
        """One round trip: the dedupe markers, then what ``req`` asks for (categories from a cache
        that an item batch, which moves the catalog version, invalidates)."""
        users, hist_users, fields = req.users, req.hist_users, req.impression_fields
        fkeys = [self.keys.user_features(u) for u in users]
        (mark_cmds, mark_keys), (user_cmds, user_keys) = self._mget(markers), self._mget(fkeys)
        uncached = [i for i in req.items if i not in self._cats]
        cmds = [self._cmd(self.keys.catalog_version, "HGET", "items"), *mark_cmds, *user_cmds]
        cmds += [self._cmd(self.keys.history(u), "LRANGE", 0, req.history_n - 1) for u in hist_users]
        cmds += [self._cmd(self.keys.impressions(u), "HMGET", *fs) for u, fs in fields.items()]
        cmds += [self._cmd(self.keys.item(i), "HGET", "categories") for i in uncached]
        res = await self.r.execute(cmds)
        for r in res:
            raise_error(r)
        version, res = res[0], res[1:]
        n_mark, n_user = len(mark_cmds), len(user_cmds)
        marks = _ungroup(mark_keys, res[:n_mark])
        ufeats = _ungroup(user_keys, res[n_mark:n_mark + n_user])
        rest = res[n_mark + n_user:]
        hists = dict(zip(hist_users, rest[:len(hist_users)], strict=True))
        imps = dict(zip(fields, rest[len(hist_users):len(hist_users) + len(fields)], strict=True))
        await self._categories(version, req.items, uncached, rest[len(hist_users) + len(fields):])
        snap = Snapshot()
        for u, fk in zip(users, fkeys, strict=True):
            got = imps.get(u, [])
            rec = {f: v.decode() for f, v in zip(fields.get(u, []), got, strict=True) if v is not None}
            snap.users[u] = UserState(decode_history([h.decode() for h in hists.get(u, [])]), rec)
            snap.user_features[u] = self._user_state(u, ufeats[fk])
        snap.categories = {i: self._cats[i] for i in req.items}
        return [marks[m] for m in markers], snap

    def _user_state(self, user_id: str, raw: bytes | None) -> tf.UserState:
        """The state ``raw`` (stored) encodes: a copy of the one kept for exactly these bytes (the
        encoding is a function of the state, so equal bytes are an equal state), else decoded."""
        kept = self._users.get(user_id)
        if kept is not None and raw is not None and kept[0] == raw:
            st = kept[1]
            return dataclasses.replace(st, history=list(st.history), affinity=dict(st.affinity))
        return tf.loads_user(raw, user_id)

    def keep_user_states(self, states: Iterable[tuple[bytes, tf.UserState]]) -> None:
        """Remember ``(bytes written, state)`` pairs; the states must not be changed afterwards (the
        next batch copies them). The oldest are dropped past ``USER_STATES_KEPT``."""
        kept = self._users
        for raw, st in states:
            kept.pop(st.user_id, None)
            kept[st.user_id] = (raw, st)
        while len(kept) > USER_STATES_KEPT:
            del kept[next(iter(kept))]

    async def _categories(self, version: Any, wanted: Sequence[str], fetched_ids: Sequence[str],
                          fetched: Sequence[Any]) -> None:
        """Fill the cache; a moved catalog version empties it (and re-reads what came from it)."""
        if version != self._catalog or len(self._cats) > 1_000_000:
            got = set(fetched_ids)
            stale = [i for i in wanted if i not in got]
            self._cats.clear()
            self._catalog = version
            if stale:
                fetched_ids, fetched = [*fetched_ids, *stale], [*fetched, *await self._raw_categories(stale)]
        for i, c in zip(fetched_ids, fetched, strict=True):
            self._cats[i] = json.loads(c) if c else []

    async def _raw_categories(self, item_ids: Sequence[str]) -> list[Any]:
        return await self.r.execute([self._cmd(self.keys.item(i), "HGET", "categories") for i in item_ids])


def field_of(tp: TP) -> str:
    return f"{tp[0]}:{tp[1]}"


def _ungroup(groups: Sequence[Sequence[str]], replies: Sequence[Any]) -> dict[str, Any]:
    """Values of the MGETs of :meth:`StateReads._mget` (``groups``: the keys each read), by key."""
    out: dict[str, Any] = {}
    for ks, vals in zip(groups, replies, strict=True):
        out.update(zip(ks, vals, strict=True))
    return out

