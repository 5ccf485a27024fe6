"""FeatureWriter batching: newest row per entity, size-triggered flush, ONLINE only, typed errors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest
from feast.data_source import PushMode
from redis.exceptions import ConnectionError as RedisConnectionError

from core import features as names
from core.errors import StoreUnavailable
from feature_store.writer import FeatureWriter


class RecordingStore:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, pd.DataFrame, Any]] = []
        self.fail = fail

    def push(self, source: str, df: pd.DataFrame, to: Any = None) -> None:
        if self.fail:
            raise RedisConnectionError("down")
        self.calls.append((source, df, to))


def row(user: str, sec: int, n: int) -> dict[str, Any]:
    return {"user_id": user, "event_timestamp": datetime.fromtimestamp(1.8e9 + sec, tz=UTC),
            "recent_items": [f"i{n}"], "history_len": n, "last_event_ts": 1.8e9 + sec}


def test_newest_row_per_entity_and_online_only():
    store = RecordingStore()
    w = FeatureWriter(store, batch_size=100, interval_ms=60_000)  # type: ignore[arg-type]
    w.push(names.USER_REALTIME.view, [row("a", 2, 2), row("a", 1, 1), row("b", 1, 7)])
    assert store.calls == [] and w.pending == 2
    assert w.flush() == 2
    (source, df, mode), = store.calls
    assert source == names.USER_REALTIME.push_source and mode is PushMode.ONLINE
    assert dict(zip(df.user_id, df.history_len, strict=True)) == {"a": 2, "b": 7}
    assert list(df.columns) == ["user_id", "event_timestamp", *names.USER_REALTIME.fields]


def test_flushes_when_batch_is_full_and_rejects_unknown_views():
    store = RecordingStore()
    w = FeatureWriter(store, batch_size=3, interval_ms=60_000)  # type: ignore[arg-type]
    w.push(names.USER_REALTIME.view, [row("a", 1, 1), row("b", 1, 1)])
    assert store.calls == []
    w.push(names.USER_REALTIME.view, [row("c", 1, 1)])
    assert len(store.calls) == 1 and w.pending == 0
    with pytest.raises(KeyError):
        w.push(names.USER_PROFILE.view, [row("a", 1, 1)])  # batch view: never pushed


def test_redis_down_is_a_typed_error():
    w = FeatureWriter(RecordingStore(fail=True), batch_size=10)  # type: ignore[arg-type]
    w.push(names.USER_REALTIME.view, [row("a", 1, 1)])
    with pytest.raises(StoreUnavailable):
        w.flush()
