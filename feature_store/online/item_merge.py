"""Item feature states merged in place, so that no worker has to read-modify-write a shared item.

FEATURES' item state (``transforms.ItemState``: window counters, ``created_at``, ``last_event_ts`` and
the row timestamp ``ts_us``) is shared by every partition. Instead of a blob that a batch reads,
changes and writes back (which needs a lock across workers), it is kept as a hash and each batch
sends an :class:`ItemDelta` that the store merges atomically (the Redis writer's Lua script, and
:func:`merge` for the in-process store; a contract test holds them equal):

* ``mi:<minute>``/``mc:<minute>`` and ``hi:<hour>``/``hc:<hour>``: impressions and clicks per bucket,
  counted only inside the window of the newest event (``lm``/``lh``: its minute and hour) and pruned
  once per new minute (``pm``);
* ``l``: ``last_event_ts`` (max), ``c``: ``created_at`` (the last upsert's);
* ``t``: ``ts_us``. Folding events one by one maps ``x`` to ``max(us_k, x + 1)``; a batch composes to
  ``max(floor_us, x + steps)``, which is what the delta carries.

The projection of the merged state equals that of ``transforms.apply_item_event`` folded over the
same events in any order (buckets outside the newest event's window are never projected).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.events import Interaction, InteractionType, ItemUpsert
from feature_store import transforms as tf

WINDOWS = {"m": (tf.MINUTE, tf.WINDOW_MINUTES), "h": (tf.HOUR, tf.WINDOW_HOURS)}


@dataclass
class ItemDelta:
    """What a batch adds to one item's state."""

    floor_us: int = 0
    steps: int = 0
    last: float | None = None
    created_at: float | None = None
    buckets: dict[str, int] = field(default_factory=dict)  # "mi:<minute>" ... -> count

    def step(self, ts: float) -> None:
        us = tf._to_us(ts)  # noqa: SLF001 - the transform's own rounding
        self.floor_us = us if self.steps == 0 else max(us, self.floor_us + 1)
        self.steps += 1

    def add_event(self, ev: Interaction) -> None:
        imp = ev.type is InteractionType.IMPRESSION
        clk = ev.type is InteractionType.CLICK
        self.last = ev.timestamp if self.last is None else max(self.last, ev.timestamp)
        if imp or clk:
            letter = "i" if imp else "c"
            for kind, (width, _) in WINDOWS.items():
                name = f"{kind}{letter}:{int(ev.timestamp // width)}"
                self.buckets[name] = self.buckets.get(name, 0) + 1
        self.step(ev.timestamp)

    def add_upsert(self, up: ItemUpsert) -> None:
        self.created_at = up.created_at
        self.step(up.timestamp)

    def args(self) -> list[str]:
        """The Lua script's arguments: floor, steps, last, its minute and hour, created_at, then
        bucket field/count pairs."""
        last = "" if self.last is None else repr(self.last)
        lm = "" if self.last is None else str(int(self.last // tf.MINUTE))
        lh = "" if self.last is None else str(int(self.last // tf.HOUR))
        created = "" if self.created_at is None else repr(self.created_at)
        out = [str(self.floor_us), str(self.steps), last, lm, lh, created, str(len(self.buckets))]
        for name, n in self.buckets.items():
            out += [name, str(n)]
        return out


def merge(fields: dict[str, str], delta: ItemDelta) -> None:
    """Apply ``delta`` to a stored hash (mutated), exactly as the writer's Lua script does."""
    fields["t"] = str(max(delta.floor_us, int(fields.get("t", "0")) + delta.steps))
    if delta.created_at is not None:
        fields["c"] = repr(delta.created_at)
    if delta.last is not None and ("l" not in fields or float(fields["l"]) < delta.last):
        fields["l"] = repr(delta.last)
        fields["lm"], fields["lh"] = str(int(delta.last // tf.MINUTE)), str(int(delta.last // tf.HOUR))
    if "lm" not in fields:
        return
    newest = {"m": int(fields["lm"]), "h": int(fields["lh"])}
    for name, n in delta.buckets.items():
        if int(name[3:]) > newest[name[0]] - WINDOWS[name[0]][1]:
            fields[name] = str(int(fields.get(name, "0")) + n)
    if int(fields.get("pm", "-1")) < newest["m"]:
        for name in [f for f in fields if f[:1] in WINDOWS and f[2:3] == ":"]:
            if int(name[3:]) <= newest[name[0]] - WINDOWS[name[0]][1]:
                del fields[name]
        fields["pm"] = fields["lm"]


# The same merge on the server. ``a`` holds ``ItemDelta.args()`` from index ``i``. Integers stay below
# 2^53 (microsecond timestamps), so Lua's doubles hold them exactly.
LUA_MERGE = """
local function item_merge(k, a, i)
  local cur = redis.call('HMGET', k, 't', 'l', 'lm', 'lh', 'pm')
  local t = math.max(tonumber(a[i]), tonumber(cur[1] or '0') + tonumber(a[i + 1]))
  local sets = {'t', string.format('%.0f', t)}
  if a[i + 5] ~= '' then sets[#sets + 1] = 'c'; sets[#sets + 1] = a[i + 5] end
  local lm, lh = cur[3], cur[4]
  if a[i + 2] ~= '' and ((not cur[2]) or tonumber(cur[2]) < tonumber(a[i + 2])) then
    lm, lh = a[i + 3], a[i + 4]
    for _, v in ipairs({'l', a[i + 2], 'lm', lm, 'lh', lh}) do sets[#sets + 1] = v end
  end
  local prune = lm and tonumber(cur[5] or '-1') < tonumber(lm)
  if prune then sets[#sets + 1] = 'pm'; sets[#sets + 1] = lm end
  redis.call('HSET', k, unpack(sets))
  local nb = tonumber(a[i + 6])
  if not lm then return end
  local newest, keep = {m = tonumber(lm), h = tonumber(lh)}, {m = 60, h = 24}
  for j = i + 7, i + 6 + 2 * nb, 2 do
    local kind = string.sub(a[j], 1, 1)
    if tonumber(string.sub(a[j], 4)) > newest[kind] - keep[kind] then
      redis.call('HINCRBY', k, a[j], a[j + 1])
    end
  end
  if prune then
    local stale = {}
    for _, name in ipairs(redis.call('HKEYS', k)) do
      local kind = string.sub(name, 1, 1)
      if keep[kind] and string.sub(name, 3, 3) == ':' and
          tonumber(string.sub(name, 4)) <= newest[kind] - keep[kind] then
        stale[#stale + 1] = name
      end
    end
    if #stale > 0 then redis.call('HDEL', k, unpack(stale)) end
  end
end
"""


def item_state(item_id: str, fields: dict[str, str] | None) -> tf.ItemState:
    """The ``transforms.ItemState`` of a stored hash (empty or missing: a new item)."""
    st = tf.ItemState(item_id)
    if not fields:
        return st
    for name, count in fields.items():
        if name[:1] in WINDOWS and name[2:3] == ":":
            buckets = st.minutes if name[0] == "m" else st.hours
            cell = buckets.setdefault(int(name[3:]), [0, 0])
            cell[0 if name[1] == "i" else 1] = int(count)
    st.created_at = float(fields["c"]) if "c" in fields else None
    st.last_event_ts = float(fields["l"]) if "l" in fields else 0.0
    st.ts_us = int(fields.get("t", "0"))
    return st


_KINDS = {ord("m"): 0, ord("h"): 1}


def item_state_flat(item_id: str, flat: list[bytes]) -> tf.ItemState:
    """:func:`item_state` of an HGETALL reply as it comes (``[field, value, ...]`` bytes), in one
    pass, without decoding it to a str dict first (same fields, same values)."""
    st = tf.ItemState(item_id)
    buckets = (st.minutes, st.hours)
    for name, value in zip(flat[::2], flat[1::2], strict=True):
        kind = _KINDS.get(name[0]) if name[2:3] == b":" else None
        if kind is not None:
            cell = buckets[kind].setdefault(int(name[3:]), [0, 0])
            cell[0 if name[1] == 105 else 1] = int(value)  # 105: "i"
        elif name == b"c":
            st.created_at = float(value)
        elif name == b"l":
            st.last_event_ts = float(value)
        elif name == b"t":
            st.ts_us = int(value)
    return st

