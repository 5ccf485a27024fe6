"""FeatureWriter: push projection rows to Feast push sources in micro-batches, ONLINE only.

One Feast push costs ~4 ms whatever its size, so rows are buffered per view and sent when
``settings.feast.push_batch_size`` rows are waiting or ``push_interval_ms`` has passed since the first
buffered row (checked on each ``push``). Call ``flush()`` before committing offsets: a row is durable
only after ``flush`` returns. Within a batch only the newest row per entity is sent.

Push mode is always ``PushMode.ONLINE``: the offline side is our parquet archive, never Feast's file
offline store (its offline write rewrites the whole file on every push).

Example:
    >>> w = FeatureWriter(store, batch_size=2000, interval_ms=200)  # doctest: +SKIP
    >>> w.push("user_realtime", [project_user_realtime(state)])      # doctest: +SKIP
    >>> w.flush()                                                    # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import hiredis
import pandas as pd
from feast import FeatureStore
from feast.data_source import PushMode
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import _mmh3
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import StringList, Value
from feast.types import Array, Bool, Float32, Float64, Int32, Int64, String
from google.protobuf.timestamp_pb2 import Timestamp
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.errors import StoreUnavailable
from core.features import EVENT_TIMESTAMP, STREAM_VIEWS, ViewNames
from core.settings import Settings
from feature_store.config import feature_store
from feature_store.online.resp import pack

_BY_VIEW: dict[str, ViewNames] = {v.view: v for v in STREAM_VIEWS}


class FeatureWriter:
    """Buffers rows per stream feature view and pushes them to Feast (ONLINE) in micro-batches."""

    def __init__(self, store: FeatureStore, batch_size: int = 2000, interval_ms: int = 200) -> None:
        self._store = store
        self._batch_size = batch_size
        self._interval_s = interval_ms / 1000.0
        self._buffers: dict[str, dict[str, Mapping[str, Any]]] = {}
        self._pending = 0
        self._first_at: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings, store: FeatureStore | None = None) -> FeatureWriter:
        fs = store or feature_store(settings)
        return cls(fs, settings.feast.push_batch_size, settings.feast.push_interval_ms)

    def push(self, view: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Buffer rows (join key + ``event_timestamp`` + fields) for a stream view."""
        names = _BY_VIEW.get(view)
        if names is None:
            raise KeyError(f"{view!r} is not a stream feature view; expected one of {sorted(_BY_VIEW)}")
        buf = self._buffers.setdefault(view, {})
        for row in rows:
            key = str(row[names.join_key])
            old = buf.get(key)
            if old is None or row[EVENT_TIMESTAMP] >= old[EVENT_TIMESTAMP]:
                buf[key] = row
        self._pending += len(rows)
        self._first_at = self._first_at or time.monotonic()
        if self._due():
            self.flush()

    def _due(self) -> bool:
        if self._pending >= self._batch_size:
            return True
        return self._first_at is not None and time.monotonic() - self._first_at >= self._interval_s

    @property
    def pending(self) -> int:
        return sum(len(b) for b in self._buffers.values())

    def flush(self) -> int:
        """Push everything buffered; returns the number of rows sent. Raises StoreUnavailable."""
        sent = 0
        for view, buf in list(self._buffers.items()):
            if buf:
                self._push_view(_BY_VIEW[view], list(buf.values()))
                sent += len(buf)
            del self._buffers[view]
        self._pending, self._first_at = 0, None
        return sent

    def _push_view(self, names: ViewNames, rows: list[Mapping[str, Any]]) -> None:
        df = pd.DataFrame.from_records(rows, columns=[names.join_key, EVENT_TIMESTAMP, *names.fields])
        assert names.push_source is not None
        try:
            self._store.push(names.push_source, df, to=PushMode.ONLINE)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailable(f"feast push to {names.view} failed: {exc}") from exc


# ---- Feast's Redis layout, written directly ------------------------------------------------------
_PUSH_LUA = """
local function stored_us(h, v)
  local us = redis.call('HGET', h, v[4])
  if us then return tonumber(us) end
  local b = redis.call('HGET', h, v[1])
  if not b or b == '' then return -1 end
  local s, ns, i = 0, 0, 1
  while i <= #b do
    local tag = string.byte(b, i)
    i = i + 1
    local x, mult = 0, 1
    repeat
      local c = string.byte(b, i)
      i = i + 1
      x = x + (c % 128) * mult
      mult = mult * 128
    until c < 128
    if tag == 8 then s = x elseif tag == 16 then ns = x end
  end
  if s == 0 and ns == 0 then return -1 end
  return s * 1000000 + math.floor(ns / 1000)
end
local nv, i, views = tonumber(ARGV[1]), 2, {}
for v = 1, nv do
  local n = tonumber(ARGV[i + 1])
  views[v] = {ARGV[i], n, i + 2, ARGV[i + 2 + n]}
  i = i + 3 + n
end
local wrote = 0
for k = 1, #KEYS do
  local m = tonumber(ARGV[i])
  i = i + 1
  local sets = {}
  for _ = 1, m do
    local v = views[tonumber(ARGV[i])]
    if tonumber(ARGV[i + 1]) > stored_us(KEYS[k], v) then
      local n = #sets
      sets[n + 1], sets[n + 2], sets[n + 3], sets[n + 4] = v[1], ARGV[i + 2], v[4], ARGV[i + 1]
      n = n + 4
      for f = 0, v[2] - 1 do
        sets[n + 1], sets[n + 2] = ARGV[v[3] + f], ARGV[i + 3 + f]
        n = n + 2
      end
      wrote = wrote + 1
    end
    i = i + 3 + v[2]
  end
  if #sets > 0 then redis.call('HSET', KEYS[k], unpack(sets)) end
end
return wrote
"""


_PUSH_SHA = hashlib.sha1(_PUSH_LUA.encode()).hexdigest()


class FeastRedisWriter:
    """Writes stream-view rows into Feast's Redis online store the way ``FeatureStore.push`` (ONLINE)
    does: the hash of the entity key (``serialize_entity_key`` + project), one field per feature
    (``_mmh3("view:feature")`` -> ``ValueProto``) and ``_ts:view`` (a ``Timestamp``), skipping a
    row that is not newer than the stored one. The skip is decided in a Lua script, atomically, so
    two workers pushing the same item cannot put an older row over a newer one (Feast reads, then
    writes); the row time is also kept as integer microseconds in ``_us:view`` (Feast reads only
    its own fields) so the script compares numbers, not protobuf bytes. A contract test holds
    Feast's fields equal to those of its own push, byte for byte, and its reads unchanged.

    About 20x cheaper than the SDK's push (no DataFrame, no Arrow, no per-value type dispatch); the
    views, fields and types come from the registry."""

    def __init__(self, client: Any, project: str, views: Mapping[str, Sequence[tuple[str, Any]]]) -> None:
        self.r, self.project = client, project.encode()
        self._fields = {v: [(name, _mmh3(f"{v}:{name}"), _encoder(dtype)) for name, dtype in fields]
                        for v, fields in views.items()}
        self._keys: dict[tuple[str, str], bytes] = {}

    @classmethod
    def from_store(cls, client: Any, store: FeatureStore, views: Sequence[ViewNames]) -> FeastRedisWriter:
        defs = {v.view: [(f.name, f.dtype) for f in store.get_feature_view(v.view).features] for v in views}
        return cls(client, store.project, defs)

    def _key(self, join_key: str, entity_id: str) -> bytes:
        key = self._keys.get((join_key, entity_id))
        if key is None:
            ek = EntityKey(join_keys=[join_key], entity_values=[Value(string_val=entity_id)])
            key = serialize_entity_key(ek, entity_key_serialization_version=3) + self.project
            if len(self._keys) > 500_000:
                self._keys.clear()
            self._keys[(join_key, entity_id)] = key
        return key

    def entries(self, rows: Mapping[str, Sequence[Mapping[str, Any]]]
                ) -> dict[bytes, list[tuple[str, int, bytes, list[bytes]]]]:
        """Per entity hash key, its rows: (view, microseconds, Timestamp bytes, field values)."""
        out: dict[bytes, list[tuple[str, int, bytes, list[bytes]]]] = {}
        for view, view_rows in rows.items():
            names, fields = _BY_VIEW[view], self._fields[view]
            for row in view_rows:
                us = row.get("_ts_us")
                if us is not None:  # what FromDatetime(ts_datetime(us)) gives
                    secs, nanos, stamp = timestamp(us)
                else:
                    ts = Timestamp()
                    ts.FromDatetime(row[EVENT_TIMESTAMP])
                    secs, nanos, stamp = ts.seconds, ts.nanos, ts.SerializeToString()
                key = self._key(names.join_key, str(row[names.join_key]))
                values = [enc(row[n]) for n, _, enc in fields]
                out.setdefault(key, []).append((view, secs * 1_000_000 + nanos // 1000, stamp, values))
        return out

    def _arguments(self, entries: Mapping[bytes, Sequence[tuple[str, int, bytes, list[bytes]]]]
                   ) -> list[Any]:
        """The script's ARGV: per view its fields' keys once, then each key's rows."""
        views = list(dict.fromkeys(view for rows in entries.values() for view, *_ in rows))
        index = {v: n + 1 for n, v in enumerate(views)}
        args: list[Any] = [len(views)]
        for v in views:
            args += [f"_ts:{v}", len(self._fields[v]), *(hkey for _, hkey, _ in self._fields[v]), f"_us:{v}"]
        for rows in entries.values():
            args.append(len(rows))
            for view, us, stamp, values in rows:
                args += [index[view], us, stamp, *values]
        return args

    async def write(self, rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> int:
        """Write the rows (newest per entity and view first: callers coalesce); returns how many
        were newer than what was stored. Raises ConnectionError/TimeoutError (retryable)."""
        entries = self.entries(rows)
        if not entries:
            return 0
        if self.r.cluster:  # one slot per entity key (Feast's keys have no hash tags)
            calls = [(key_slot(k), [k], self._arguments({k: e})) for k, e in entries.items()]
        else:
            calls = [(0, list(entries), self._arguments(entries))]
        cmds = [(slot, pack("EVALSHA", _PUSH_SHA, len(ks), *ks, *args)) for slot, ks, args in calls]
        replies = await self.r.execute(cmds)
        redo = [j for j, r in enumerate(replies)
                if isinstance(r, hiredis.ReplyError) and "NOSCRIPT" in str(r)]
        if redo:
            again = await self.r.execute([(calls[j][0], pack(
                "EVAL", _PUSH_LUA, len(calls[j][1]), *calls[j][1], *calls[j][2])) for j in redo])
            for j, r in zip(redo, again, strict=True):
                replies[j] = r
        bad = [r for r in replies if isinstance(r, hiredis.ReplyError)]
        if bad:
            raise StoreUnavailable(f"feast rows: {bad[0]}")
        return sum(int(r) for r in replies)


def _encoder(dtype: Any) -> Callable[[Any], bytes]:
    """``ValueProto`` bytes of one Python value of a Feast type, what ``SerializeToString`` gives
    (unit test): scalars encoded by hand (4x cheaper), string lists by protobuf with the last
    encodings kept (a user's recent items rarely change between two rows)."""
    if isinstance(dtype, Array):
        if dtype.base_type == String:
            return _Cached(lambda v: Value(string_list_val=StringList(val=v)).SerializeToString())
        if dtype.base_type == Float64:
            return _double_list
        raise TypeError(f"no encoder for {dtype}")
    for t, make in ((String, _string), (Int64, _int), (Int32, _int32), (Float64, _double),
                    (Float32, _float), (Bool, _bool)):
        if dtype == t:
            return _or_empty(make)
    raise TypeError(f"no encoder for {dtype}")


def _or_empty(make: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    def encode(v: Any) -> bytes:
        return b"" if v is None else make(v)
    return encode


def varint(n: int) -> bytes:
    """Protobuf varint of a non-negative integer (negatives: pass ``n & MASK64``)."""
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


MASK64 = (1 << 64) - 1


def _string(v: Any) -> bytes:
    b = str(v).encode()
    return b"\x12" + varint(len(b)) + b


def _int(v: Any) -> bytes:
    return b"\x20" + varint(int(v) & MASK64)


def _int32(v: Any) -> bytes:
    return b"\x18" + varint(int(v) & MASK64)


def _double(v: Any) -> bytes:
    return b"\x29" + struct.pack("<d", float(v))


def _float(v: Any) -> bytes:
    return b"\x35" + struct.pack("<f", float(v))


def _bool(v: Any) -> bytes:
    return b"\x38\x01" if v else b"\x38\x00"


def _double_list(v: Any) -> bytes:
    if v is None:
        return b""
    inner = b"\x0a" + varint(8 * len(v)) + struct.pack(f"<{len(v)}d", *v) if len(v) else b""
    return b"\x7a" + varint(len(inner)) + inner


def timestamp(us: int) -> tuple[int, int, bytes]:
    """(seconds, nanos, ``Timestamp`` bytes) of a row timestamp in microseconds."""
    secs, nanos = us // 1_000_000, us % 1_000_000 * 1000
    return secs, nanos, (b"\x08" + varint(secs & MASK64) if secs else b"") + (
        b"\x10" + varint(nanos) if nanos else b"")


class _Cached:
    """The encoding of a list value, kept for the last 20,000 distinct values."""

    def __init__(self, encode: Callable[[Any], bytes]) -> None:
        self.encode, self.seen = encode, dict[tuple[Any, ...], bytes]()

    def __call__(self, v: Any) -> bytes:
        if v is None:
            return b""
        key = tuple(v)
        hit = self.seen.get(key)
        if hit is None:
            if len(self.seen) >= 20_000:
                self.seen.clear()
            hit = self.seen[key] = self.encode(v)
        return hit
