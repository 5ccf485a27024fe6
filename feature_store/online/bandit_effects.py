"""Bandit statistics from impressions and clicks: Beta counts per (segment, item) and the sufficient
statistics (A = sum x x^T, b = sum r x) of a per-item linear bandit over a hashed one-hot context.

The context vector of an event has at most two active features, the bias and one hashed segment
value ``k`` (:func:`context_indices`), so A and b are determined by the impressions ``n:<k>`` and the
attributed clicks ``c:<k>`` per ``k`` (0: no segment value): that is what is stored, one increment
per event instead of four, and :func:`linear_stats` gives A and b back.

A click counts only when attributed to its impression through ``feed_id:position`` (same item, not
yet clicked); the impression record is then marked clicked, so a second click never counts twice.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass

from core.events import Interaction, InteractionType
from feature_store.online.keys import Keys, pop_slice
from feature_store.online.plan import Plan

SEP = "\t"
CLICKED = "1"
Keep = Callable[[Interaction, str], bool]


@dataclass(frozen=True)
class BanditParams:
    segment_key: str = "device"
    dim: int = 8
    impression_ttl_s: int = 86400


def bandit_segments(ev: Interaction, segment_key: str) -> list[str]:
    value = ev.context.get(segment_key)
    return ["all", f"{segment_key}:{value}"] if value else ["all"]


def context_indices(context: dict[str, str], segment_key: str, dim: int) -> list[int]:
    """Active features of the one-hot context vector: a bias plus the hashed segment value."""
    value = context.get(segment_key)
    if not value or dim < 2:
        return [0]
    return [0, 1 + zlib.crc32(value.encode()) % (dim - 1)]


def context_vector(context: dict[str, str], segment_key: str, dim: int) -> list[float]:
    x = [0.0] * dim
    for i in context_indices(context, segment_key, dim):
        x[i] = 1.0
    return x


def add_bandit_effects(plan: Plan, ev: Interaction, impressions: MutableMapping[str, str],
                       p: BanditParams, keys: Keys, keep: Keep | None = None) -> None:
    """``keep`` (see ``effects.Keep``) filters the writes to the shared tables per shard."""
    if ev.type is InteractionType.IMPRESSION:
        _impression(plan, ev, impressions, p, keys, keep)
    elif ev.type is InteractionType.CLICK and ev.feed_id is not None and ev.position is not None:
        _click(plan, ev, impressions, p, keys, keep)


def _impression(plan: Plan, ev: Interaction, impressions: MutableMapping[str, str],
                p: BanditParams, keys: Keys, keep: Keep | None) -> None:
    part = pop_slice(ev.item_id)
    if keep is None or keep(ev, keys.bandit("all", part)):
        for seg in bandit_segments(ev, p.segment_key):
            plan.hincr[keys.bandit(seg, part)][f"{ev.item_id}:i"] += 1
    lin = keys.linear(ev.item_id)
    if keep is None or keep(ev, lin):
        plan.hincr[lin][f"n:{context_indices(ev.context, p.segment_key, p.dim)[-1]}"] += 1
    if ev.feed_id is not None and ev.position is not None:
        ctx = ev.context.get(p.segment_key, "")
        impressions[f"{ev.feed_id}:{ev.position}"] = f"{ev.item_id}{SEP}{ctx}{SEP}0"


def _click(plan: Plan, ev: Interaction, impressions: MutableMapping[str, str],
           p: BanditParams, keys: Keys, keep: Keep | None) -> None:
    field = f"{ev.feed_id}:{ev.position}"
    record = impressions.get(field)
    if record is None:
        return
    item, ctx, clicked = record.split(SEP)
    if item != ev.item_id or clicked == CLICKED:
        return
    impressions[field] = f"{item}{SEP}{ctx}{SEP}{CLICKED}"
    context = {p.segment_key: ctx} if ctx else {}
    part = pop_slice(item)
    if keep is None or keep(ev, keys.bandit("all", part)):
        for seg in (["all", f"{p.segment_key}:{ctx}"] if ctx else ["all"]):
            plan.hincr[keys.bandit(seg, part)][f"{item}:c"] += 1
    lin = keys.linear(item)
    if keep is None or keep(ev, lin):
        plan.hincr[lin][f"c:{context_indices(context, p.segment_key, p.dim)[-1]}"] += 1


def linear_stats(fields: Mapping[str, str | float], dim: int) -> tuple[list[list[float]], list[float]]:
    """A (dim x dim) and b of an item's linear bandit from its stored counts."""
    a = [[0.0] * dim for _ in range(dim)]
    b = [0.0] * dim
    for name, value in fields.items():
        kind, _, k = name.partition(":")
        idx = [0] if int(k) == 0 else [0, int(k)]
        if kind == "n":
            for i in idx:
                for j in idx:
                    a[i][j] += float(value)
        elif kind == "c":
            for i in idx:
                b[i] += float(value)
    return a, b
