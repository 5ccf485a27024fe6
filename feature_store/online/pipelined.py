"""The serving request's two reads, each ONE pipelined round trip on one socket (``RedisPipe``).

* user: the history with the co-visitation rows of its newest items (a server-side script: their keys
  follow from the history, which the client has not seen yet), the seen set, the user record and
  Feast's user row;
* candidates: their decayed popularity (``ZMSCORE`` per popularity slice and epoch), the bandit counts
  the request lacks (``HMGET`` per slice; cached by the state), the catalogue records it lacks (cached
  by the state) and Feast's item rows.

Plain Redis only: the script reads keys it does not declare (each co-visitation row lives in its
item's shard) and one connection serves every shard. On a Redis Cluster the state reads call by call.
Every answer is built by the same ``views`` functions as ``RedisOnlineState``'s single reads (a
contract test holds them equal).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import hiredis

from core.protocols import Features
from feature_store.online import views
from feature_store.online.keys import SHARDS, Keys

# The shard of an item is crc32(id) % SHARDS (keys.shard): computed here in Lua to name its row.
USER_LUA = """
local function shard(s, n)
  local crc = -1
  for i = 1, #s do
    crc = bit.bxor(crc, string.byte(s, i))
    for _ = 1, 8 do
      crc = bit.bxor(bit.rshift(crc, 1), bit.band(-306674912, -bit.band(crc, 1)))
    end
  end
  crc = bit.bnot(crc)
  if crc < 0 then crc = crc + 4294967296 end
  return crc % n
end
local hist = redis.call('LRANGE', KEYS[1], 0, -1)
local out = {}
for i = 1, math.min(tonumber(ARGV[2]), #hist) do
  local item = string.match(hist[i], '^(.*)\\t[^\\t]*$') or hist[i]
  local key = ARGV[1] .. '{' .. shard(item, tonumber(ARGV[4])) .. '}:cv:' .. item
  out[i] = redis.call('ZREVRANGE', key, 0, tonumber(ARGV[3]) - 1, 'WITHSCORES')
end
return {hist, out}
"""
ITEM_FIELDS = ("categories", "attributes", "created_at", "active")
_BULK: dict[str, bytes] = {}  # member -> its RESP bulk string (pack_members)
_MAX_BULK = 1 << 18


class Rows(Protocol):
    """Feast's rows as pipelined commands (``feature_store.reader.FastFeatureReader``)."""

    def packed(self, join_key: str, ids: Sequence[str]) -> bytes: ...

    def decoded(self, join_key: str, ids: Sequence[str], replies: Sequence[Any],
                copy: bool = True) -> list[Features]: ...


def pack(*args: Any) -> bytes:
    return hiredis.pack_command(args)  # type: ignore[arg-type]


def _bulk(member: str) -> bytes:
    """``member``'s RESP bulk string, from the memo or built into it."""
    out = _BULK.get(member)
    if out is None:
        raw = member.encode()
        out = b"$%d\r\n%s\r\n" % (len(raw), raw)
        if len(_BULK) >= _MAX_BULK:
            _BULK.clear()
        _BULK[member] = out
    return out


def pack_members(command: str, key: str, members: Sequence[str]) -> bytes:
    """``pack(command, key, *members)``, the members' RESP bulk strings memoised: a request packs the
    same candidate ids for each popularity epoch, and requests share most of them."""
    bulks = list(map(_BULK.get, members))
    if None in bulks:  # (bytes == None is False: no Python call per member)
        bulks = [b or _bulk(m) for b, m in zip(bulks, members, strict=True)]
    return b"*%d\r\n%s%s%s" % (len(members) + 2, _bulk(command), _bulk(key), b"".join(bulks))  # type: ignore[arg-type]


def user_commands(keys: Keys, user_id: str, covisit_k: int) -> bytes:
    """EVAL (history + co-visitation rows), SMEMBERS seen, HGETALL user: 3 replies."""
    per = min(covisit_k, views.COVISIT_PER_ITEM)
    script = pack("EVAL", USER_LUA, 1, keys.history(user_id), keys.prefix, views.COVISIT_RECENT, per, SHARDS)
    return script + pack("SMEMBERS", keys.seen(user_id)) + pack("HGETALL", keys.user(user_id))


def flat_rows(flat: Sequence[Any]) -> views.Rows:
    """[member, score, member, score, ...] (a script's ZREVRANGE WITHSCORES) -> rows."""
    members = views.texts(flat[0::2])
    return list(zip(members, map(float, flat[1::2]), strict=True))


def user_parts(replies: Sequence[Any]) -> tuple[list[str], list[views.Rows], set[str], dict[str, str]]:
    """(history, co-visitation rows, seen, record) from the 3 replies of :func:`user_commands`."""
    (hist, neighbours), seen, rec = replies
    record = dict(zip(views.texts(rec[0::2]), views.texts(rec[1::2]), strict=True))
    return views.texts(hist), [flat_rows(n) for n in neighbours], set(views.texts(seen)), record


def info_commands(keys: Keys, item_ids: Sequence[str]) -> bytes:
    """HMGET record fields + GET vector per item: 2 replies each."""
    return b"".join(pack("HMGET", keys.item(i), *ITEM_FIELDS) + pack("GET", keys.vector(i)) for i in item_ids)


def infos(item_ids: Sequence[str], replies: Sequence[Any]) -> dict[str, Any]:
    out = {}
    for j, iid in enumerate(item_ids):
        cats, attrs, created, active = (None if f is None else views.text(f) for f in replies[2 * j])
        out[iid] = views.item_info(iid, cats, attrs, created, active, replies[2 * j + 1])
    return out
