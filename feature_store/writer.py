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

import time
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from feast import FeatureStore
from feast.data_source import PushMode
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.errors import StoreUnavailable
from core.features import EVENT_TIMESTAMP, STREAM_VIEWS, ViewNames
from core.settings import Settings
from feature_store.config import feature_store

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
