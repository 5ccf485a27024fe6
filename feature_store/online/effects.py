"""Pure effect computation for interactions: events + a state snapshot -> a :class:`Plan`.

Popularity/trending, co-visitation, seen sets, engaged history and bandit statistics. The user
features (history, category affinities) and item window counters are FEATURES' transforms
(``feature_store.transforms``), kept as states under ``fs:`` keys by the writer.

The function is deterministic given the events in partition order, the users' state read before
the batch and the items' categories; replaying the same fresh events yields the same plan.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.events import Interaction, InteractionType
from feature_store.online import decay
from feature_store.online.bandit_effects import BanditParams, add_bandit_effects
from feature_store.online.keys import Keys, pop_slice
from feature_store.online.plan import Plan

TYPE_WEIGHTS: dict[InteractionType, float] = {
    InteractionType.CLICK: 1.0, InteractionType.LIKE: 2.0, InteractionType.PURCHASE: 4.0,
    InteractionType.ADD_TO_CART: 2.0, InteractionType.SHARE: 2.0, InteractionType.DWELL: 0.5,
}
POP, TREND = "pop", "trend"
SEP = "\t"
# Whether an event's write to a key's shard is still to be applied: False only when replaying a batch
# whose writes reached some shards of a Redis Cluster before a crash (see ``writer``).
Keep = Callable[[Any, str], bool]  # (event, key) -> write it


@dataclass(frozen=True)
class EffectParams:
    history_len: int = 50
    popularity_half_life_s: float = 7 * 86400.0
    trending_half_life_s: float = 3600.0
    affinity_half_life_s: float = 7 * 86400.0
    covisit_window_s: float = 1800.0
    covisit_cap: int = 200
    covisit_history: int = 10
    covisit_backward: float = 0.3
    segment_keys: tuple[str, ...] = ("device",)
    bandit: BanditParams = field(default_factory=BanditParams)


@dataclass
class UserState:
    """What the batch needs to know about a user before it: the newest ``covisit_history`` engaged
    items (newest first) and the impression records its clicks refer to. History is written as a
    delta (LPUSH + LTRIM), which is exact because a batch is applied once, atomically."""

    history: list[tuple[str, float]] = field(default_factory=list)
    impressions: dict[str, str] = field(default_factory=dict)


def weight(ev: Interaction) -> float:
    if ev.type is InteractionType.DWELL and ev.is_deep:
        return 1.0
    return TYPE_WEIGHTS.get(ev.type, 0.0)


def engaged(ev: Interaction) -> bool:
    return weight(ev) > 0


def segments(ev: Interaction, categories: Sequence[str], segment_keys: Sequence[str]) -> list[str]:
    segs = ["all", *(f"cat:{c}" for c in categories)]
    return segs + [f"{k}:{ev.context[k]}" for k in segment_keys if ev.context.get(k)]


def encode_history(items: Sequence[tuple[str, float]]) -> list[str]:
    return [f"{item}{SEP}{ts!r}" for item, ts in items]


def decode_history(raw: Sequence[str]) -> list[tuple[str, float]]:
    out = []
    for entry in raw:
        item, _, ts = entry.rpartition(SEP)
        out.append((item, float(ts)))
    return out


def plan_interactions(events: Sequence[Interaction], users: Mapping[str, UserState],
                      categories: Mapping[str, Sequence[str]], p: EffectParams, keys: Keys,
                      keep: Keep | None = None) -> Plan:
    """Every effect of ``events`` (fresh, deduplicated, in partition order) as one plan. ``keep``
    filters the shared writes (popularity, co-visitation, bandit tables) per event and shard."""
    plan = Plan()
    state = {u: UserState(list(s.history), dict(s.impressions)) for u, s in users.items()}
    for ev in events:
        user = state.setdefault(ev.user_id, UserState())
        cats = categories.get(ev.item_id, ())
        add_bandit_effects(plan, ev, user.impressions, p.bandit, keys, keep)
        if ev.type is not InteractionType.IMPRESSION:
            plan.sadd[keys.seen(ev.user_id)].add(ev.item_id)
        if engaged(ev):
            _add_popularity(plan, ev, cats, p, keys, keep)
            _add_covisit(plan, ev, user.history, p, keys, keep)
            user.history = [(ev.item_id, ev.timestamp), *user.history][: p.covisit_history]
            plan.lpush[keys.history(ev.user_id)].extend(encode_history([(ev.item_id, ev.timestamp)]))
            plan.ltrim[keys.history(ev.user_id)] = p.history_len
    for user_id, user in state.items():
        before = users.get(user_id, UserState()).impressions
        changed = {f: v for f, v in user.impressions.items() if before.get(f) != v}
        if changed:
            plan.hset[keys.impressions(user_id)] = changed
            plan.expire[keys.impressions(user_id)] = p.bandit.impression_ttl_s
    return plan


def _add_popularity(plan: Plan, ev: Interaction, cats: Sequence[str], p: EffectParams, keys: Keys,
                    keep: Keep | None) -> None:
    w = weight(ev)
    part = pop_slice(ev.item_id)
    segs = segments(ev, cats, p.segment_keys)
    item, ts = ev.item_id, ev.timestamp
    for kind, hl in ((POP, p.popularity_half_life_s), (TREND, p.trending_half_life_s)):
        seg_key = keys.segments(kind, part)
        if keep is not None and not keep(ev, seg_key):
            continue
        epoch = decay.epoch_of(ts, hl)
        inc = decay.grow(w, ts, hl)
        ttl = int(3 * decay.epoch_len(hl))
        zincr, expire = plan.zincr, plan.expire
        for seg in segs:
            key = keys.popularity(kind, epoch, seg, part)
            zincr[key][item] += inc
            expire[key] = ttl
        plan.sadd[seg_key].update(segs)


def _add_covisit(plan: Plan, ev: Interaction, history: Sequence[tuple[str, float]],
                 p: EffectParams, keys: Keys, keep: Keep | None) -> None:
    """``other`` was engaged ``d`` steps before ``ev``: the pair counts ``1/d`` forward (other -> this
    item: what people engage with next) and ``covisit_backward / d`` the other way."""
    mine = keys.covisit(ev.item_id)
    keep_mine = keep is None or keep(ev, mine)
    for d, (other, ts) in enumerate(history[: p.covisit_history], start=1):
        if other == ev.item_id or abs(ev.timestamp - ts) > p.covisit_window_s:
            continue
        theirs = keys.covisit(other)
        if keep is None or keep(ev, theirs):
            plan.zincr[theirs][ev.item_id] += 1.0 / d
            plan.zcap[theirs] = p.covisit_cap
        if keep_mine:
            plan.zincr[mine][other] += p.covisit_backward / d
            plan.zcap[mine] = p.covisit_cap
