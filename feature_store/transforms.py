"""Pure feature code, shared by the stream worker and the offline builder (parity by construction).

Each feature family is a small state plus two kinds of function:

* ``apply_*(state, event, ...) -> state`` folds one event into the state. It MUTATES and returns
  the state (speed: the worker runs this ~10k times/s). Deterministic, no I/O, no clock.
* ``project_*(state, now=None) -> row`` turns the state into one feature row (absolute values) whose
  keys are the entity join key, ``event_timestamp`` and the field names of ``core.features``.

Every update is order-independent (sums, decays re-based to the newest timestamp, history sorted by
``(timestamp, event_id)``, windows pruned relative to the newest event), so a replay of the archive in
timestamp order gives the state the worker built in arrival order.

Row timestamps: ``state.ts_us`` (integer microseconds) strictly increases with every apply, as
``max(event_us, previous + 1)``. Feast's Redis store skips any write whose timestamp is <= the stored
one, so a late event still produces a newer row, and pushes are monotone per entity across restarts
(the counter lives in the state).

How the worker (STREAMS) uses this, per micro-batch of deduplicated events:

1. ``MGET`` the states of the touched users/items from Redis under its own key prefix
   (e.g. ``{prefix}fs:user:{user_id}`` / ``{prefix}fs:item:{item_id}``), ``loads_user/loads_item``
   (a missing key -> ``UserState(user_id)`` / ``ItemState(item_id)``).
2. For each interaction: ``apply_user_event(us, ev, categories, params)`` and ``apply_item_event(it,
   ev)``; for each ``ItemUpsert``: ``apply_item_upsert(it, upsert)``. ``categories`` are the item's
   categories from the catalog at apply time; put them in the archived record too
   (``record["categories"]``) so the offline replay sees exactly what the worker saw.
3. ``MSET`` the ``dumps()`` of the states, then push ONE projection per touched entity:
   ``writer.push(USER_REALTIME.view, [project_user_realtime(us)])``, likewise
   ``project_user_affinity`` -> ``USER_AFFINITY.view`` and ``project_item_realtime`` ->
   ``ITEM_REALTIME.view``; then ``writer.flush()`` before committing offsets.

Example:
    >>> from core.events import Interaction
    >>> st = UserState("u1")
    >>> ev = Interaction(event_id="e1", user_id="u1", item_id="i1", type="click", timestamp=100.0)
    >>> project_user_realtime(apply_user_event(st, ev, ["jazz"], TransformParams()))["recent_items"]
    ['i1']
"""

from __future__ import annotations

import bisect
import json
import math
import struct
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.events import Interaction, InteractionType, ItemUpsert, UserUpsert
from core.features import EVENT_TIMESTAMP, ITEM_KEY, USER_KEY
from core.settings import Settings

Row = dict[str, Any]

# Affinity weight per interaction type (dwell: long dwell counts as a click, short as nothing).
AFFINITY_WEIGHTS: dict[InteractionType, float] = {
    InteractionType.IMPRESSION: 0.0, InteractionType.CLICK: 1.0, InteractionType.LIKE: 2.0,
    InteractionType.PURCHASE: 3.0, InteractionType.ADD_TO_CART: 2.0, InteractionType.SHARE: 2.0,
    InteractionType.SKIP: -0.2, InteractionType.HIDE: -1.0, InteractionType.DWELL: 0.0,
}
NOT_HISTORY = frozenset({InteractionType.IMPRESSION, InteractionType.SKIP, InteractionType.HIDE})
MINUTE, HOUR = 60, 3600
WINDOW_MINUTES, WINDOW_HOURS = 60, 24


@dataclass(frozen=True)
class TransformParams:
    history_len: int = 50
    affinity_half_life_s: float = 7 * 86400.0
    top_categories: int = 20

    @classmethod
    def from_settings(cls, settings: Settings) -> TransformParams:
        w = settings.worker
        return cls(history_len=w.history_len, affinity_half_life_s=w.affinity_half_life_s)


def _to_us(ts: float) -> int:
    return int(round(ts * 1_000_000))


def _next_us(prev_us: int, ts: float) -> int:
    return max(_to_us(ts), prev_us + 1)


def ts_datetime(ts_us: int) -> datetime:
    """The row timestamp as a tz-aware UTC datetime (what Feast push and parquet sources take)."""
    return datetime.fromtimestamp(ts_us // 1_000_000, tz=UTC).replace(microsecond=ts_us % 1_000_000)


# ---------------------------------------------------------------- user: history + affinity


@dataclass
class UserState:
    user_id: str
    history: list[tuple[float, str, str]] = field(default_factory=list)  # (ts, event_id, item_id)
    affinity: dict[str, tuple[float, float]] = field(default_factory=dict)  # cat -> (value, ref_ts)
    last_event_ts: float = 0.0
    ts_us: int = 0


def _weight(ev: Interaction) -> float:
    if ev.type is InteractionType.DWELL:
        return 1.0 if ev.is_deep else 0.0
    return AFFINITY_WEIGHTS.get(ev.type, 0.0)


def _decay(value: float, dt: float, half_life: float) -> float:
    return value * math.pow(2.0, -dt / half_life)


def _add_affinity(old: tuple[float, float] | None, w: float, ts: float, h: float) -> tuple[float, float]:
    if old is None:
        return (w, ts)
    value, ref = old
    if ts >= ref:
        return (_decay(value, ts - ref, h) + w, ts)
    return (value + _decay(w, ref - ts, h), ref)


def apply_user_event(
    state: UserState, ev: Interaction, categories: list[str], params: TransformParams
) -> UserState:
    """Fold one interaction into the user's history and category affinities."""
    if ev.type not in NOT_HISTORY:
        bisect.insort(state.history, (ev.timestamp, ev.event_id, ev.item_id))
        del state.history[: max(0, len(state.history) - params.history_len)]
    w = _weight(ev)
    if w:
        for cat in categories:
            state.affinity[cat] = _add_affinity(
                state.affinity.get(cat), w, ev.timestamp, params.affinity_half_life_s)
    state.last_event_ts = max(state.last_event_ts, ev.timestamp)
    state.ts_us = _next_us(state.ts_us, ev.timestamp)
    return state


def _now(state_ts_us: int, now: float | None) -> tuple[int, float]:
    ts_us = state_ts_us if now is None else _to_us(now)
    return ts_us, ts_us / 1_000_000


def project_user_realtime(state: UserState, now: float | None = None) -> Row:
    """Most recent first; ``now`` defaults to the state's row timestamp (use that for pushes)."""
    ts_us, _ = _now(state.ts_us, now)
    return {USER_KEY: state.user_id, EVENT_TIMESTAMP: ts_datetime(ts_us),
            "recent_items": [h[2] for h in reversed(state.history)],
            "history_len": len(state.history), "last_event_ts": state.last_event_ts}


def project_user_affinity(
    state: UserState, now: float | None = None, params: TransformParams | None = None
) -> Row:
    """Top categories by affinity decayed to ``now`` (scores descending, ties by name)."""
    p = params or TransformParams()
    ts_us, t = _now(state.ts_us, now)
    scored = [(_decay(v, t - ref, p.affinity_half_life_s), c) for c, (v, ref) in state.affinity.items()]
    top = sorted(scored, key=lambda s: (-s[0], s[1]))[: p.top_categories]
    return {USER_KEY: state.user_id, EVENT_TIMESTAMP: ts_datetime(ts_us),
            "affinity_categories": [c for _, c in top], "affinity_scores": [float(s) for s, _ in top]}


def dumps_user(state: UserState) -> bytes:
    d = asdict(state)
    return json.dumps(d, separators=(",", ":")).encode()


def loads_user(raw: bytes | str | None, user_id: str) -> UserState:
    """Either encoding: :func:`encode_user` (what the online store keeps) or :func:`dumps_user`."""
    if not raw:
        return UserState(user_id)
    if isinstance(raw, bytes) and raw[:2] == _USER_MAGIC:
        return decode_user(raw)
    d = json.loads(raw)
    return UserState(d["user_id"], [tuple(h) for h in d["history"]],  # type: ignore[misc]
                     {c: (v[0], v[1]) for c, v in d["affinity"].items()}, d["last_event_ts"], d["ts_us"])


_USER_MAGIC = b"U1"
_USER_HEAD = struct.Struct("<dqII")
_SEP = "\x00"


def encode_user(state: UserState) -> bytes:
    """Compact binary form of a user state (about 10x cheaper than JSON both ways): a header
    (last_event_ts, ts_us, history and affinity lengths), the floats as packed doubles, then the
    strings NUL-separated. A state with a NUL in an id falls back to :func:`dumps_user`."""
    hist, aff = state.history, state.affinity
    strings = [state.user_id, *(h[1] for h in hist), *(h[2] for h in hist), *aff]
    text = _SEP.join(strings)
    if text.count(_SEP) != len(strings) - 1:
        return dumps_user(state)
    floats = [h[0] for h in hist] + [x for pair in aff.values() for x in pair]
    head = _USER_HEAD.pack(state.last_event_ts, state.ts_us, len(hist), len(aff))
    return b"".join((_USER_MAGIC, head, struct.pack(f"<{len(floats)}d", *floats), text.encode()))


def user_ts_us(raw: bytes | str) -> int:
    """The ``ts_us`` of a stored user state (:func:`loads_user`'s encodings), read from the binary
    header without decoding the rest."""
    if isinstance(raw, bytes) and raw[:2] == _USER_MAGIC:
        return int(_USER_HEAD.unpack_from(raw, 2)[1])
    return loads_user(raw, "").ts_us


def decode_user(raw: bytes) -> UserState:
    last, ts_us, nh, na = _USER_HEAD.unpack_from(raw, 2)
    at = 2 + _USER_HEAD.size
    floats = struct.unpack_from(f"<{nh + 2 * na}d", raw, at)
    strings = raw[at + 8 * len(floats):].decode().split(_SEP)
    ids, items, cats = strings[1:1 + nh], strings[1 + nh:1 + 2 * nh], strings[1 + 2 * nh:]
    aff = dict(zip(cats, zip(floats[nh::2], floats[nh + 1::2], strict=True), strict=True))
    return UserState(strings[0], list(zip(floats[:nh], ids, items, strict=True)), aff, last, ts_us)


# ---------------------------------------------------------------- item: windowed counters + freshness


@dataclass
class ItemState:
    item_id: str
    minutes: dict[int, list[int]] = field(default_factory=dict)  # minute -> [impressions, clicks]
    hours: dict[int, list[int]] = field(default_factory=dict)  # hour -> [impressions, clicks]
    created_at: float | None = None
    last_event_ts: float = 0.0
    ts_us: int = 0


def _bump(buckets: dict[int, list[int]], key: int, imp: int, clk: int, keep: int, newest: int) -> None:
    if key > newest - keep:
        cell = buckets.setdefault(key, [0, 0])
        cell[0] += imp
        cell[1] += clk
    for old in [k for k in buckets if k <= newest - keep]:
        del buckets[old]


def apply_item_event(state: ItemState, ev: Interaction) -> ItemState:
    """Count impressions and clicks in minute buckets (1 h window) and hour buckets (24 h window)."""
    imp = int(ev.type is InteractionType.IMPRESSION)
    clk = int(ev.type is InteractionType.CLICK)
    state.last_event_ts = max(state.last_event_ts, ev.timestamp)
    if imp or clk:
        newest = state.last_event_ts
        _bump(state.minutes, int(ev.timestamp // MINUTE), imp, clk, WINDOW_MINUTES, int(newest // MINUTE))
        _bump(state.hours, int(ev.timestamp // HOUR), imp, clk, WINDOW_HOURS, int(newest // HOUR))
    state.ts_us = _next_us(state.ts_us, ev.timestamp)
    return state


def apply_item_upsert(state: ItemState, up: ItemUpsert) -> ItemState:
    state.created_at = up.created_at
    state.ts_us = _next_us(state.ts_us, up.timestamp)
    return state


def _window(buckets: dict[int, list[int]], current: int, keep: int) -> tuple[int, int]:
    imp = clk = 0
    for k, (i, c) in buckets.items():
        if current - keep < k <= current:
            imp += i
            clk += c
    return imp, clk


def project_item_realtime(state: ItemState, now: float | None = None) -> Row:
    ts_us, t = _now(state.ts_us, now)
    i1, c1 = _window(state.minutes, int(t // MINUTE), WINDOW_MINUTES)
    i24, c24 = _window(state.hours, int(t // HOUR), WINDOW_HOURS)
    age = t - state.created_at if state.created_at is not None else -1.0
    return {ITEM_KEY: state.item_id, EVENT_TIMESTAMP: ts_datetime(ts_us),
            "impressions_1h": i1, "clicks_1h": c1, "ctr_1h": c1 / i1 if i1 else 0.0,
            "impressions_24h": i24, "clicks_24h": c24, "ctr_24h": c24 / i24 if i24 else 0.0,
            "item_age_s": float(age)}


def dumps_item(state: ItemState) -> bytes:
    return json.dumps(asdict(state), separators=(",", ":")).encode()


def loads_item(raw: bytes | str | None, item_id: str) -> ItemState:
    if not raw:
        return ItemState(item_id)
    d = json.loads(raw)
    return ItemState(d["item_id"], {int(k): v for k, v in d["minutes"].items()},
                     {int(k): v for k, v in d["hours"].items()}, d["created_at"],
                     d["last_event_ts"], d["ts_us"])


# ---------------------------------------------------------------- batch views (offline builder only)


@dataclass
class UserProfileState:
    user_id: str
    segment: str = ""
    lifetime_events: int = 0
    lifetime_positives: int = 0
    first_seen_ts: float = 0.0
    ts_us: int = 0


def apply_profile_event(state: UserProfileState, ev: Interaction) -> UserProfileState:
    state.lifetime_events += 1
    state.lifetime_positives += int(ev.is_positive)
    first = state.first_seen_ts
    state.first_seen_ts = ev.timestamp if not first else min(first, ev.timestamp)
    state.ts_us = _next_us(state.ts_us, ev.timestamp)
    return state


def apply_profile_upsert(state: UserProfileState, up: UserUpsert) -> UserProfileState:
    state.segment = up.segment or ""
    state.ts_us = _next_us(state.ts_us, up.timestamp)
    return state


def project_user_profile(state: UserProfileState) -> Row:
    return {USER_KEY: state.user_id, EVENT_TIMESTAMP: ts_datetime(state.ts_us), "segment": state.segment,
            "lifetime_events": state.lifetime_events, "lifetime_positives": state.lifetime_positives,
            "first_seen_ts": state.first_seen_ts}


def project_item_meta(up: ItemUpsert, content_vector: list[float] | None = None) -> Row:
    """Item metadata row from an upsert (``content_vector``: as archived by the worker, if any)."""
    return {ITEM_KEY: up.item_id, EVENT_TIMESTAMP: ts_datetime(_to_us(up.timestamp)),
            "categories": list(up.categories), "created_at": up.created_at, "active": up.active,
            "text_len": len(up.title) + len(up.text), "content_vector": list(content_vector or [])}
