"""A mutation plan: what one batch changes in the online state, built by pure functions.

A :class:`Plan` is compiled to a list of :data:`Op` in one canonical order (:func:`ops`); the Redis
writer ships each shard's ops to one Lua script (``writer``), and the in-process store interprets the
same list (``memory_state.KeySpace``), so both apply the same writes in the same order.

Ops are split by the hash tag of their key (one script per tag in a Redis Cluster) and by stage:
``shared`` writes (popularity, co-visitation, bandit tables, item states) go before the ``owned``
writes of the batch's users (their histories, seen sets, impressions, feature states and dedupe
markers), see :func:`stage_of`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from feature_store.online.item_merge import ItemDelta

# (code, key, args): codes are those of the Lua script in ``writer`` and of ``KeySpace.apply``. The
# arguments of the pair codes (``PAIRS``) are flat, ``[member, value, member, value, ...]``, as the
# script takes them (no tuple per pair, and no second pass to flatten them).
Op = tuple[str, str, Any]
PAIRS = frozenset({"zi", "hi", "hb", "hs", "za"})
SHARED, OWNED = "s", "u"
_OWNED_KINDS = ("hist:", "seen:", "imp:", "fs:user:", "dd:")


def _nested() -> defaultdict[str, defaultdict[str, float]]:
    return defaultdict(lambda: defaultdict(float))


@dataclass
class Plan:
    """Additive increments (commute, so replay order does not matter) plus absolute writes."""

    zincr: defaultdict[str, defaultdict[str, float]] = field(default_factory=_nested)
    hincr: defaultdict[str, defaultdict[str, float]] = field(default_factory=_nested)
    hset: defaultdict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    lists: dict[str, list[str]] = field(default_factory=dict)
    lpush: defaultdict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    ltrim: dict[str, int] = field(default_factory=dict)
    sadd: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    srem: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    zadd: defaultdict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    zrem: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    setex: dict[str, tuple[bytes | str, int | None]] = field(default_factory=dict)
    expire: dict[str, int] = field(default_factory=dict)
    zcap: dict[str, int] = field(default_factory=dict)
    imerge: dict[str, ItemDelta] = field(default_factory=dict)

    def command_count(self) -> int:
        return (sum(len(v) for v in self.zincr.values()) + sum(len(v) for v in self.hincr.values())
                + len(self.hset) + len(self.lists) + len(self.sadd) + len(self.setex) + len(self.expire)
                + len(self.imerge))


def flat_pairs(pairs: Iterable[tuple[Any, Any]]) -> list[Any]:
    """``[(a, b), (c, d)]`` -> ``[a, b, c, d]`` in C."""
    return list(chain.from_iterable(pairs))


def ops(plan: Plan) -> Iterator[Op]:
    """The plan's writes in the order both stores apply them. Increments travel as ``repr`` text
    (exact); sets are sorted so that the order is deterministic."""
    for key, delta in plan.imerge.items():
        yield "im", key, delta
    for key, members in plan.zincr.items():
        yield "zi", key, flat_pairs(zip(members, map(repr, members.values()), strict=True))
    for key, fields in plan.hincr.items():
        incs = fields.values()
        if all(map(float.is_integer, incs)):  # counts: HINCRBY is cheaper, stores the same text
            yield "hb", key, flat_pairs(zip(fields, map(str, map(int, incs)), strict=True))
            continue
        whole = [(f, str(int(v))) for f, v in fields.items() if v.is_integer()]
        if whole:
            yield "hb", key, flat_pairs(whole)
        yield "hi", key, flat_pairs((f, repr(v)) for f, v in fields.items() if not v.is_integer())
    for key, cap in plan.zcap.items():
        yield "zc", key, cap
    for key, mapping in plan.hset.items():
        yield "hs", key, flat_pairs(mapping.items())
    for key, values in plan.lpush.items():
        yield "lp", key, values
    for key, n in plan.ltrim.items():
        yield "lt", key, n
    for key, values in plan.lists.items():
        yield "ls", key, values
    yield from _membership(plan)
    for key, (value, ttl) in plan.setex.items():
        yield "set", key, (value, ttl)
    for key, seconds in plan.expire.items():
        yield "ex", key, seconds


def _membership(plan: Plan) -> Iterator[Op]:
    for key, added in plan.sadd.items():
        if added:
            yield "sa", key, sorted(added)
    for key, removed in plan.srem.items():
        if removed:
            yield "sr", key, sorted(removed)
    for key, scores in plan.zadd.items():
        if scores:
            yield "za", key, flat_pairs((repr(float(s)), m) for m, s in scores.items())
    for key, removed in plan.zrem.items():
        if removed:
            yield "zr", key, sorted(removed)


def stage_of(key: str) -> str:
    """``owned`` for the per-user keys a batch's partition owns, else ``shared``."""
    close = key.index("}")
    return OWNED if key.startswith(_OWNED_KINDS, close + 2) else SHARED


def group_of(key: str) -> str:
    """The hash tag (``{...}``) of a key."""
    start = key.index("{")
    return key[start:key.index("}", start) + 1]


_PLACES: dict[str, tuple[str, str]] = {}


def place(key: str) -> tuple[str, str]:
    """``(stage, tag)`` of a key, remembered."""
    got = _PLACES.get(key)
    if got is None:
        if len(_PLACES) >= 1 << 20:
            _PLACES.clear()
        got = _PLACES[key] = (stage_of(key), group_of(key))
    return got


def grouped(plan: Plan) -> dict[tuple[str, str], list[Op]]:
    """``(stage, tag) -> ops`` in canonical order within each group."""
    out: dict[tuple[str, str], list[Op]] = {}
    for op in ops(plan):
        where = place(op[1])
        group = out.get(where)
        if group is None:
            group = out[where] = []
        group.append(op)
    return out
