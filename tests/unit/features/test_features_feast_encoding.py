"""The Feast row writer works without importing Feast: its encodings equal Feast's own (entity keys,
feature field keys, every stream-view value type with zero, negative and empty values, row
timestamps), and its table of the stream views' types equals the feature repo's definitions."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import _mmh3
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import DoubleList, StringList, Value
from feast.types import Array, Float64, Int64, String
from google.protobuf.timestamp_pb2 import Timestamp

from feature_store.feast_rows import STREAM_TYPES, _encoder, entity_key, field_key, timestamp
from feature_store.repo.definitions import FIELD_TYPES
from feature_store.transforms import ts_datetime

RNG = random.Random(4)
CASES = [
    ("int64", "int64_val", [0, 1, -1, 127, 128, 2**40, -(2**63), 2**63 - 1]),
    ("int32", "int32_val", [0, 5, -7, 2**31 - 1]),
    ("double", "double_val", [0.0, -0.0, 1.5, -3.25e-300, 1e308, RNG.random()]),
    ("float", "float_val", [0.0, 2.5, -1.0]),
    ("bool", "bool_val", [True, False]),
    ("string", "string_val", ["", "u1", "é日本" * 50]),
]
FEAST_TYPES = {"string_list": Array(String), "double_list": Array(Float64), "int64": Int64, "double": Float64}


@pytest.mark.parametrize(("kind", "field", "values"), CASES)
def test_scalars_encode_like_protobuf(kind: str, field: str, values: list[object]) -> None:
    enc = _encoder(kind)
    for v in values:
        assert enc(v) == Value(**{field: v}).SerializeToString(), v
    assert enc(None) == Value().SerializeToString()


def test_lists_encode_like_protobuf() -> None:
    strings, doubles = _encoder("string_list"), _encoder("double_list")
    for n in (0, 1, 3, 50, 300):
        items = [f"i{RNG.randrange(10**6)}-é" * (1 + n % 3) for _ in range(n)]
        scores = [RNG.uniform(-5, 5) for _ in range(n)]
        assert strings(items) == Value(string_list_val=StringList(val=items)).SerializeToString()
        assert strings(list(items)) == strings(items)  # the kept encoding of an equal list
        assert doubles(scores) == Value(double_list_val=DoubleList(val=scores)).SerializeToString()


def test_row_timestamps_encode_like_feast() -> None:
    for us in (0, 1, 999_999, 1_000_000, 1_795_973_855_115_079, 1_795_973_855_000_000):
        ts = Timestamp()
        ts.FromDatetime(ts_datetime(us))
        assert timestamp(us) == (ts.seconds, ts.nanos, ts.SerializeToString()), us
    assert ts_datetime(1_000_001) == datetime(1970, 1, 1, 0, 0, 1, 1, tzinfo=UTC)


def test_keys_are_feasts() -> None:
    for join_key, value in (("user_id", "u1"), ("item_id", "é" * 300), ("user_id", "")):
        ek = EntityKey(join_keys=[join_key], entity_values=[Value(string_val=value)])
        assert entity_key(join_key, value, "proj") == serialize_entity_key(ek, 3) + b"proj"
    assert field_key("user_realtime", "recent_items") == _mmh3("user_realtime:recent_items")


def test_stream_view_types_are_the_repos() -> None:
    for view, fields in STREAM_TYPES.items():
        for name, kind in fields.items():
            assert FEAST_TYPES[kind] == FIELD_TYPES[name], (view, name)
