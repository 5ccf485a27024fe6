"""The Feast row writer's hand-made protobuf encodings equal protobuf's own (the bytes Feast stores
and decodes): every stream-view type, zero, negative and empty values, and row timestamps."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from feast.protos.feast.types.Value_pb2 import DoubleList, StringList, Value
from feast.types import Array, Bool, Float32, Float64, Int32, Int64, String
from google.protobuf.timestamp_pb2 import Timestamp

from feature_store.transforms import ts_datetime
from feature_store.writer import _encoder, timestamp

RNG = random.Random(4)
CASES = [
    (Int64, "int64_val", [0, 1, -1, 127, 128, 2**40, -(2**63), 2**63 - 1]),
    (Int32, "int32_val", [0, 5, -7, 2**31 - 1]),
    (Float64, "double_val", [0.0, -0.0, 1.5, -3.25e-300, 1e308, RNG.random()]),
    (Float32, "float_val", [0.0, 2.5, -1.0]),
    (Bool, "bool_val", [True, False]),
    (String, "string_val", ["", "u1", "é日本" * 50]),
]


@pytest.mark.parametrize(("dtype", "field", "values"), CASES)
def test_scalars_encode_like_protobuf(dtype: object, field: str, values: list[object]) -> None:
    enc = _encoder(dtype)
    for v in values:
        assert enc(v) == Value(**{field: v}).SerializeToString(), v
    assert enc(None) == Value().SerializeToString()


def test_lists_encode_like_protobuf() -> None:
    strings, doubles = _encoder(Array(String)), _encoder(Array(Float64))
    for n in (0, 1, 3, 50, 300):
        items = [f"i{RNG.randrange(10**6)}-é" for _ in range(n)]
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
