"""The online state in process: the stream worker's plans applied to dicts, read like Redis.

The training job and ``streamrec eval`` replay an event log into this store, then call the same funnel
the processes call over Redis. Writes go through the worker's own planning (``batch``: effects and
FEATURES' transforms); a plan is applied exactly as the worker's Lua script and pipeline apply it.
Reads return what :class:`feature_store.online.redis_state.RedisOnlineState` returns for the same key
space (``views`` holds the shared logic), and the feature rows the worker pushes to Feast (a contract
test holds all of this equal to the Redis side on the same events).

Expiry (TTL) is not modelled: a replay runs at event time, where wall-clock expiry means nothing.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any

import numpy as np

from core import features as names
from core.events import Interaction, ItemUpsert, UserUpsert
from core.online import F32, ItemInfo, Scored, UserState
from core.protocols import Features
from core.settings import Settings
from feature_store import transforms as tf
from feature_store.online import item_merge, views
from feature_store.online.batch import (
    Snapshot,
    SnapshotRequest,
    effect_params,
    plan_interaction_batch,
    plan_item_batch,
    plan_users,
)
from feature_store.online.effects import POP, TREND, decode_history
from feature_store.online.effects import UserState as EffectUserState
from feature_store.online.item_merge import ItemDelta
from feature_store.online.keys import SLICES, Keys, pop_slice
from feature_store.online.merged_top import MergedTop
from feature_store.online.plan import Plan, ops

USER_FIELDS = (*names.USER_REALTIME.fields, *names.USER_AFFINITY.fields)
ITEM_FIELDS = names.ITEM_REALTIME.fields
TOP_CACHE = 64  # rows a ZREVRANGE cache keeps at least
_SCORE_MEMBER = itemgetter(1, 0)  # a row's ZREVRANGE sort key: (score, member)
_MEMBER = itemgetter(0)


def zrevrange(zset: dict[str, float] | None, k: int) -> views.Rows:
    """Redis ZREVRANGE 0 k-1 WITHSCORES: score descending, ties in reverse lexicographic order."""
    if not zset or k <= 0:
        return []
    if len(zset) <= 8 * k:  # a C-keyed sort beats the heap's Python loop unless k is a small part
        return sorted(zset.items(), key=_SCORE_MEMBER, reverse=True)[:k]
    return heapq.nlargest(k, zset.items(), key=_SCORE_MEMBER)


def refreshed_top(top: views.Rows, zset: dict[str, float], pending: dict[str, float | None]
                  ) -> views.Rows | None:
    """The ZREVRANGE cache ``top`` brought up to date in place after ``ZINCRBY``/``ZADD`` of the
    ``pending`` members (each with its score when the cache was last read, None if it had none) and
    caps that removed no cached member (``zset`` as it is now); or None when it cannot be kept exactly
    (a pending member's score went down, or a cap removed it).

    While no cached score falls, a member neither cached nor bumped still ranks at or below the cache's
    last row, so the new top-``len(top)`` is the top of the cached and bumped members still in the set;
    a cache shorter than ``TOP_CACHE`` held every member, as these do now, so it may grow to
    ``TOP_CACHE``. Each bumped member moves by two binary searches, so a read after a few writes costs
    a few list moves, not a sort of the cache (the popularity slices of a large catalogue, the fresh
    list and the co-visitation rows, at every replay stop)."""
    limit = max(len(top), TOP_CACHE)
    for m, old in pending.items():
        new = zset.get(m)
        if old is not None:
            if new is None or new < old:
                return None
            i = _position(top, old, m)
            if i < len(top) and top[i][0] == m:
                del top[i]
        if new is not None:
            top.insert(_position(top, new, m), (m, new))
    del top[limit:]
    return top


def _position(rows: views.Rows, score: float, member: str) -> int:
    """Index of the first row of ``rows`` (ZREVRANGE order: (score, member) descending) that ranks at
    or below ``(score, member)``."""
    key = (score, member)
    lo, hi = 0, len(rows)
    while lo < hi:
        mid = (lo + hi) // 2
        m, s = rows[mid]
        if (s, m) > key:
            lo = mid + 1
        else:
            hi = mid
    return lo


class KeySpace:
    """Redis' data types as dicts, with the worker's plans applied as its Lua script applies them
    (the same op list, :func:`plan.ops`). ``ztop`` answers ZREVRANGE from a cache that the writes to
    the key since keep up to date (:func:`refreshed_top`); ``gen`` counts the writes to each sorted set,
    so a reader can tell that a set has not changed since it last read it."""

    def __init__(self) -> None:
        self.z: dict[str, dict[str, float]] = {}
        self.h: dict[str, dict[str, str]] = {}
        self.l: dict[str, list[str]] = {}
        self.s: dict[str, set[str]] = {}
        self.v: dict[str, str | bytes] = {}
        self.gen: dict[str, int] = {}  # per sorted set: writes so far
        self._top: dict[str, views.Rows] = {}
        self._pending: dict[str, dict[str, float | None]] = {}  # per cached key: bumped -> score then

    def ztop(self, key: str, k: int) -> views.Rows:
        hit = self._top.get(key)
        pending = self._pending.pop(key, None)
        if hit is not None and pending is not None:
            hit = refreshed_top(hit, self.z.get(key, {}), pending)
        if hit is None or (len(hit) < k and len(hit) < len(self.z.get(key, ()))):
            hit = zrevrange(self.z.get(key), max(k, TOP_CACHE))
        self._top[key] = hit
        return hit[:k]

    def apply(self, plan: Plan) -> None:
        for op in ops(plan):
            self.apply_op(*op)

    def apply_op(self, code: str, key: str, arg: Any) -> None:
        if code == "zc":
            self._cap(key, arg)
            return
        if code in _ZSET_OPS:
            self.gen[key] = self.gen.get(key, 0) + 1
            if key in self._top:
                self._note(code, key, arg)
        getattr(self, f"_{code}")(key, arg)

    def _cap(self, key: str, cap: int) -> None:
        """ZREMRANGEBYRANK key 0 -(cap+1): the set's lowest members go (by (score, member), as Redis
        ranks them) until ``cap`` are left. A cached top that held one of them is dropped (members
        leave a sorted set only by a cap or a ZREM, and a ZREM drops the cache)."""
        self.gen[key] = self.gen.get(key, 0) + 1
        gone = self._zc(key, cap)
        top = self._top.get(key)
        if gone and top is not None and any(map(gone.__contains__, map(_MEMBER, top))):
            self._drop_top(key)

    def _drop_top(self, key: str) -> None:
        del self._top[key]
        self._pending.pop(key, None)

    def _note(self, code: str, key: str, arg: Any) -> None:
        """Before a ZINCRBY or ZADD to a cached sorted set: each member's score as cached, for
        :func:`refreshed_top` at the next read (a ZREM drops the cache; a cap, :meth:`_cap`)."""
        if code == "zr":
            self._drop_top(key)
            return
        pending = self._pending.setdefault(key, {})
        zs = self.z.get(key, {})
        for m in _members(code, arg):
            if m not in pending:
                pending[m] = zs.get(m)

    def _im(self, key: str, delta: ItemDelta) -> None:
        item_merge.merge(self.h.setdefault(key, {}), delta)

    def _zi(self, key: str, members: list[str]) -> None:
        zs = self.z.setdefault(key, {})
        for m, inc in _pairs(members):
            zs[m] = zs.get(m, 0.0) + float(inc)

    def _hi(self, key: str, fields: list[str]) -> None:
        hs = self.h.setdefault(key, {})
        for f, inc in _pairs(fields):
            hs[f] = _float_text(float(hs.get(f, "0")) + float(inc))

    def _hb(self, key: str, fields: list[str]) -> None:
        hs = self.h.setdefault(key, {})
        for f, inc in _pairs(fields):
            hs[f] = str(int(hs.get(f, "0")) + int(inc))

    def _zc(self, key: str, cap: int) -> set[str]:
        """Removes the ``excess`` lowest members over ``cap`` and returns them, without sorting the
        set by (score, member): the lowest all score at most the excess-th least score (a sort of
        bare floats, in C), and only the members at or under it are sorted by (score, member)."""
        zs = self.z.get(key)
        if zs is None or len(zs) <= cap:
            return set()
        excess = len(zs) - cap
        least = min(zs.values()) if excess == 1 else sorted(zs.values())[excess - 1]
        low = sorted([(s, m) for m, s in zs.items() if s <= least])
        gone = {m for _, m in low[:excess]}
        for m in gone:
            del zs[m]
        return gone

    def _hs(self, key: str, pairs: list[str]) -> None:
        self.h.setdefault(key, {}).update(_pairs(pairs))

    def _lp(self, key: str, values: list[str]) -> None:
        self.l[key] = list(reversed(values)) + self.l.get(key, [])

    def _lt(self, key: str, n: int) -> None:
        self.l[key] = self.l.get(key, [])[:n]

    def _ls(self, key: str, values: list[str]) -> None:
        self.l[key] = list(values)

    def _sa(self, key: str, members: list[str]) -> None:
        self.s.setdefault(key, set()).update(members)

    def _sr(self, key: str, members: list[str]) -> None:
        self.s.get(key, set()).difference_update(members)

    def _za(self, key: str, pairs: list[str]) -> None:
        self.z.setdefault(key, {}).update({m: float(score) for score, m in _pairs(pairs)})

    def _zr(self, key: str, members: list[str]) -> None:
        for m in members:
            self.z.get(key, {}).pop(m, None)

    def _set(self, key: str, value_ttl: tuple[str | bytes, int | None]) -> None:
        self.v[key] = value_ttl[0]

    def _ex(self, key: str, seconds: int) -> None:
        """Expiry is not modelled (see the module docstring)."""


_ZSET_OPS = frozenset({"zi", "zc", "za", "zr"})


def _members(code: str, arg: Any) -> Sequence[str]:
    """The members a write sets: ``zi`` [member, inc, ...], ``za`` [score, member, ...]."""
    return arg[0::2] if code == "zi" else arg[1::2]


def _pairs(flat: Sequence[Any]) -> zip[tuple[Any, Any]]:
    """``[a, b, c, d]`` (a pair op's flat arguments, ``plan.PAIRS``) -> ``(a, b), (c, d)``."""
    return zip(flat[0::2], flat[1::2], strict=True)


def _float_text(x: float) -> str:
    """HINCRBYFLOAT's reply format for the values the worker writes (integer-valued counts)."""
    return str(int(x)) if x == int(x) else repr(x)


class MemoryOnline:
    """Implements ``core.online.OnlineState`` and ``core.protocols.FeatureReader`` in process, and
    ingests events with the worker's plans (``apply_items``, ``apply_users``, ``apply_interactions``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = Keys(settings.redis.key_prefix)
        self.params = effect_params(settings)
        self.tparams = tf.TransformParams.from_settings(settings)
        self.pop_hl = settings.worker.popularity_half_life_s
        self.trend_hl = settings.worker.trending_half_life_s
        self.kv = KeySpace()
        self.dedupe: set[str] = set()
        self._infos: dict[str, ItemInfo | None] = {}
        self._rows: dict[str, tuple[dict[str, str] | None, str, dict[str, Any]]] = {}
        self._merged = MergedTop(SLICES)

    # ---- writes --------------------------------------------------------------------------------
    def apply_interactions(self, events: Sequence[Interaction]) -> int:
        """Dedupe by event id, plan with the worker's code, apply. Returns the number applied."""
        fresh: list[Interaction] = []
        for ev in events:
            if ev.event_id not in self.dedupe:
                self.dedupe.add(ev.event_id)
                fresh.append(ev)
        if fresh:
            snap = self._snapshot(SnapshotRequest.for_events(fresh, self.params))
            plan = plan_interaction_batch(fresh, snap, self.params, self.tparams, self.keys)
            self.kv.apply(plan)
        return len(fresh)

    def apply_items(self, items: Sequence[ItemUpsert], vectors: Mapping[str, bytes]) -> None:
        for it in items:
            self._infos.pop(it.item_id, None)
        self.kv.apply(plan_item_batch(items, vectors, self.keys))

    def apply_users(self, users: Sequence[UserUpsert]) -> None:
        self.kv.apply(plan_users(users, self.keys))

    def _snapshot(self, req: SnapshotRequest) -> Snapshot:
        kv, keys, snap = self.kv, self.keys, Snapshot()
        for u in req.users:
            hist = kv.l.get(keys.history(u), [])[: req.history_n] if u in req.hist_users else []
            imp = kv.h.get(keys.impressions(u), {})
            rec = {f: imp[f] for f in req.impression_fields.get(u, []) if f in imp}
            snap.users[u] = EffectUserState(decode_history(hist), rec)
            snap.user_features[u] = tf.loads_user(kv.v.get(keys.user_features(u)), u)
        for i in req.items:
            snap.categories[i] = self._categories(i)
        return snap

    def _categories(self, item_id: str) -> list[str]:
        info = views.item_info(item_id, self.kv.h.get(self.keys.item(item_id), {}).get("categories"),
                               None, None, None, None)
        return info.categories if info is not None else []

    # ---- OnlineState ---------------------------------------------------------------------------
    def ping(self) -> bool:
        return True

    def segment_key(self, segment: str | None) -> str:
        return views.segment_key(segment, self.settings.bandit.segment_key)

    def user(self, user_id: str) -> UserState:
        k = self.settings.retrieval.covisit
        hist = self.kv.l.get(self.keys.history(user_id), [])
        per = min(k, views.COVISIT_PER_ITEM)
        neighbours = [self.kv.ztop(self.keys.covisit(i), per)
                      for i in views.history_items(hist, views.COVISIT_RECENT)]
        return views.user_state(user_id, hist, neighbours, set(self.kv.s.get(self.keys.seen(user_id), ())),
                                dict(self.kv.h.get(self.keys.user(user_id), {})), k)

    def _segmented(self, kind: str, half_life: float, segment: str | None, k: int, now: float) -> Scored:
        """``views.decayed_top`` of each slice's top ``k`` (as the Redis side reads them), kept merged
        across reads (``merged_top``)."""
        if k <= 0:
            return []
        seg = self.segment_key(segment)
        for s in [seg] if seg == "all" else [seg, "all"]:
            keys = [(e, [self.keys.popularity(kind, e, s, part) for part in range(SLICES)])
                    for e in views.epochs(now, half_life)]
            top = self._merged.top(f"{kind}:{s}", keys, self.kv.gen, lambda key: self.kv.ztop(key, k),
                                   now, half_life, k)
            if top:
                return top
        return []

    def popular(self, segment: str | None, k: int, now: float) -> Scored:
        return self._segmented(POP, self.pop_hl, segment, k, now)

    def trending(self, segment: str | None, k: int, now: float) -> Scored:
        return self._segmented(TREND, self.trend_hl, segment, k, now)

    def covisit(self, item_ids: Sequence[str], k: int) -> Scored:
        if not item_ids or k <= 0:
            return []
        return views.sum_neighbours([self.kv.ztop(self.keys.covisit(i), k) for i in item_ids], k)

    def fresh(self, k: int) -> Scored:
        return self.kv.ztop(self.keys.fresh, k)

    def items(self, item_ids: Sequence[str]) -> list[ItemInfo | None]:
        """Decoded once per upsert (only ``apply_items`` changes an item's record or vector)."""
        infos = self._infos
        for iid in [i for i in item_ids if i not in infos]:  # then one C-level lookup per item
            rec = self.kv.h.get(self.keys.item(iid), {})
            vec = self.kv.v.get(self.keys.vector(iid))
            infos[iid] = views.item_info(iid, rec.get("categories"), rec.get("attributes"),
                                         rec.get("created_at"), rec.get("active"),
                                         vec if isinstance(vec, bytes) else None)
        return list(map(infos.__getitem__, item_ids))

    def item_popularity(self, item_ids: Sequence[str], now: float) -> F32:
        rows = []
        for e in views.epochs(now, self.pop_hl):
            tables = [self.kv.z.get(self.keys.popularity(POP, e, "all", part), {}) for part in range(SLICES)]
            rows.append((e, [tables[pop_slice(i)].get(i) for i in item_ids]))
        return views.decayed_scores(rows, now, self.pop_hl, len(item_ids))

    def posteriors(self, segment: str | None, item_ids: Sequence[str]) -> tuple[F32, F32]:
        seg = self.segment_key(segment)
        tables = [self.kv.h.get(self.keys.bandit(seg, part), {}) for part in range(SLICES)]
        of = [tables[s] for s in map(pop_slice, item_ids)]
        counts = [(float(t.get(f"{i}:i", 0.0)), float(t.get(f"{i}:c", 0.0)))
                  for t, i in zip(of, item_ids, strict=True)]
        b = self.settings.bandit
        return views.posterior_arrays(counts, b.prior_alpha, b.prior_beta)

    # ---- FeatureReader: the rows the worker pushes to Feast's stream views ----------------------
    def user_features(self, user_id: str) -> Features:
        raw = self.kv.v.get(self.keys.user_features(user_id))
        row: dict[str, Any] = {names.USER_KEY: user_id, **dict.fromkeys(USER_FIELDS)}
        if raw:
            st = tf.loads_user(raw, user_id)
            row.update(_fields(tf.project_user_realtime(st)))
            row.update(_fields(tf.project_user_affinity(st, params=self.tparams)))
        return row

    def item_features(self, item_ids: Sequence[str]) -> list[Features]:
        """Projected once per stored state (a merge replaces the ``t`` field, the row timestamp,
        whenever it changes the state; the row is a pure function of the state). The state's hash is
        kept with the row: writes merge into the same dict (no op replaces or deletes a hash), so its
        key need not be built again."""
        out = []
        rows = self._rows
        for iid in item_ids:
            hit = rows.get(iid)
            fields = hit[0] if hit is not None and hit[0] is not None else \
                self.kv.h.get(self.keys.item_features(iid))
            version = fields.get("t", "") if fields else ""
            if hit is None or hit[1] != version:
                row: dict[str, Any] = {names.ITEM_KEY: iid, **dict.fromkeys(ITEM_FIELDS)}
                if fields:
                    row.update(_fields(tf.project_item_realtime(item_merge.item_state(iid, fields))))
                hit = rows[iid] = (fields, version, row)
            out.append(dict(hit[2]))
        return out


def _fields(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in (names.USER_KEY, names.ITEM_KEY, names.EVENT_TIMESTAMP)}


def vectors_as_bytes(item_ids: Sequence[str], vectors: F32) -> dict[str, bytes]:
    """Content vectors as the worker stores them (float32 bytes per item)."""
    vecs = np.asarray(vectors, np.float32)
    return {iid: vecs[n].tobytes() for n, iid in enumerate(item_ids)}
