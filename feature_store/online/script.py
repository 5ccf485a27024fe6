"""The Lua script that applies a batch's ops to the keys of one hash tag, behind a guard.

``KEYS[1]`` is the guard hash, the other keys are those the ops name (declared, so the script runs on
a Redis Cluster when they share one slot). ``ARGV``: the number of guards, then per guard its field,
the value it must hold and the value to move it to; then the ops, each as code, key index, argument
count and arguments (``plan.ops``; ``im`` is ``item_merge``). A guard that does not hold makes the
script return ``{0, field, value}`` before any write.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from feature_store.online.item_merge import LUA_MERGE
from feature_store.online.plan import PAIRS, Op
from feature_store.online.resp import Command, ReplyError, Target

Guard = tuple[str, int, int]  # field, expected value, new value
Call = tuple[str, Sequence[Guard], Sequence[Op]]  # guard key, guards, ops

SCRIPT = LUA_MERGE + """
local function many(cmd, k, a, b)
  for s = a, b, 1000 do redis.call(cmd, k, unpack(ARGV, s, math.min(b, s + 999))) end
end
local ng = tonumber(ARGV[1])
local g = 2
for _ = 1, ng do
  local cur = redis.call('HGET', KEYS[1], ARGV[g]) or '-1'
  if cur ~= ARGV[g + 1] then return {0, ARGV[g], cur} end
  g = g + 3
end
local i, n = g, #ARGV
while i <= n do
  local op, k, na = ARGV[i], KEYS[tonumber(ARGV[i + 1])], tonumber(ARGV[i + 2])
  local a = i + 3
  local b = a + na - 1
  i = b + 1
  if op == 'zi' then for j = a, b, 2 do redis.call('ZINCRBY', k, ARGV[j + 1], ARGV[j]) end
  elseif op == 'hi' then for j = a, b, 2 do redis.call('HINCRBYFLOAT', k, ARGV[j], ARGV[j + 1]) end
  elseif op == 'hb' then for j = a, b, 2 do redis.call('HINCRBY', k, ARGV[j], ARGV[j + 1]) end
  elseif op == 'im' then item_merge(k, ARGV, a)
  elseif op == 'zc' then redis.call('ZREMRANGEBYRANK', k, 0, -(tonumber(ARGV[a]) + 1))
  elseif op == 'hs' then many('HSET', k, a, b)
  elseif op == 'lp' then many('LPUSH', k, a, b)
  elseif op == 'lt' then redis.call('LTRIM', k, 0, tonumber(ARGV[a]) - 1)
  elseif op == 'ls' then redis.call('DEL', k); if na > 0 then many('RPUSH', k, a, b) end
  elseif op == 'sa' then many('SADD', k, a, b)
  elseif op == 'sr' then many('SREM', k, a, b)
  elseif op == 'za' then many('ZADD', k, a, b)
  elseif op == 'zr' then many('ZREM', k, a, b)
  elseif op == 'set' then
    if na > 1 then redis.call('SET', k, ARGV[a], 'EX', ARGV[a + 1]) else redis.call('SET', k, ARGV[a]) end
  elseif op == 'ex' then redis.call('EXPIRE', k, ARGV[a])
  elseif op == 'mk' then
    for j = a + 1, b, 2 do redis.call('SET', KEYS[tonumber(ARGV[j])], ARGV[j + 1], 'EX', ARGV[a]) end
  else return redis.error_reply('unknown op ' .. tostring(op)) end
end
for j = 2, g - 1, 3 do redis.call('HSET', KEYS[1], ARGV[j], ARGV[j + 2]) end
return 1
"""
SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()


class Conflict(Exception):
    """Another process moved a guard this batch was planned against (a zombie, or the new owner of a
    partition): nothing of the failed script was applied; read again and re-plan."""


def arguments(guard_key: str, guards: Sequence[Guard], ops: Sequence[Op]) -> list[Any]:
    """``EVALSHA sha numkeys <guard key> <keys...> <guards...> <ops...>`` as one argument list."""
    index: dict[str, int] = {guard_key: 1}
    args: list[Any] = [len(guards)]
    for name, old, new in guards:
        args += [name, str(old), str(new)]
    for code, key, arg in ops:
        k = index.setdefault(key, len(index) + 1)
        values = _markers(index, arg) if code == "mk" else flat(code, arg)
        args += [code, k, len(values), *values]
    return ["EVALSHA", SHA, len(index), *index, *args]


def _markers(index: dict[str, int], arg: tuple[int, Sequence[tuple[str, str]]]) -> list[Any]:
    """``mk``: dedupe markers of one shard, ``(ttl, [(key, value), ...])`` -> ttl, key index, value..."""
    ttl, marks = arg
    out: list[Any] = [ttl]
    for key, value in marks:
        out += [index.setdefault(key, len(index) + 1), value]
    return out


def flat(code: str, arg: Any) -> list[Any]:
    if code in PAIRS:  # flat already (``plan.ops``)
        return arg  # type: ignore[no-any-return]
    if code == "set":
        value, ttl = arg
        return [value] if ttl is None else [value, ttl]
    if code == "im":
        return arg.args()  # type: ignore[no-any-return]
    if isinstance(arg, list):
        return arg
    return [arg]


async def run(client: Target, route: Any, calls: Sequence[Call]) -> None:
    """One script per call (``route(key, args) -> Command``), all at once; raises Conflict."""
    calls = [c for c in calls if c[1] or c[2]]
    if not calls:
        return
    packed = [arguments(*call) for call in calls]
    cmds: list[Command] = [route(call[0], args) for call, args in zip(calls, packed, strict=True)]
    replies = await client.execute(cmds)
    missing = [j for j, r in enumerate(replies) if isinstance(r, ReplyError) and "NOSCRIPT" in str(r)]
    if missing:
        again = await client.execute([route(calls[j][0], ["EVAL", SCRIPT, *packed[j][2:]]) for j in missing])
        for j, r in zip(missing, again, strict=True):
            replies[j] = r
    for r in replies:
        raise_error(r)
    conflicts = [r for r in replies if isinstance(r, list) and r and r[0] == 0]
    if conflicts:
        name, cur = conflicts[0][1], conflicts[0][2]
        raise Conflict(f"guard {name!r} moved to {cur!r}: another worker applied these partitions")


_PASSING = ("CLUSTERDOWN", "TRYAGAIN", "LOADING", "MASTERDOWN", "READONLY", "BUSY")


def raise_error(reply: Any) -> None:
    """An error reply raises: ConnectionError (retried) for a cluster or server that is passing
    through a failover or start-up, RuntimeError otherwise."""
    if isinstance(reply, ReplyError) and "NOSCRIPT" not in str(reply):
        if str(reply).startswith(_PASSING):
            raise ConnectionError(f"redis: {reply}")
        raise RuntimeError(f"redis: {reply}")
