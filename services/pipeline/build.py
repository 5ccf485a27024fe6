"""Builds the real pipeline of a process: Redis state, the fast feature reader, hot-swapped models."""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from core.errors import StoreUnavailable
from core.protocols import FeatureReader, Features
from core.settings import Settings
from services.pipeline.hotswap import HotSwapper
from services.pipeline.modelset import ModelSlot
from services.pipeline.pipeline import Pipeline
from services.pipeline.redis_state import RedisState

log = logging.getLogger(__name__)
POLL_INTERVAL_S = 10.0


def redis_client(settings: Settings) -> redis.Redis:
    """Sync client with bounded timeouts: a dead Redis costs at most ``socket_timeout_s`` per call."""
    url = settings.redis.url or "redis://127.0.0.1:6379/0"
    return redis.Redis.from_url(url, socket_timeout=settings.redis.socket_timeout_s,
                                socket_connect_timeout=settings.redis.connect_timeout_s,
                                decode_responses=False, health_check_interval=0)


class LazyReader:
    """The FEATURES fast reader, built on first use (it needs the Feast registry, which may appear
    after this process starts); a failed build is retried at most every ``RETRY_S`` seconds."""

    RETRY_S = 30.0

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._reader: FeatureReader | None = None
        self._next_try = 0.0

    def _get(self) -> FeatureReader:
        if self._reader is None:
            if time.monotonic() < self._next_try:
                raise StoreUnavailable("feature reader not available yet")
            try:
                module = importlib.import_module("feature_store.reader")
                self._reader = module.FastFeatureReader.from_settings(self._settings)
            except Exception as exc:
                self._next_try = time.monotonic() + self.RETRY_S
                raise StoreUnavailable(f"feature reader unavailable: {exc}") from exc
        return self._reader

    def user_features(self, user_id: str) -> Features:
        return self._get().user_features(user_id)

    def item_features(self, item_ids: Sequence[str]) -> list[Features]:
        return self._get().item_features(item_ids)


def _loaders(settings: Settings) -> dict[str, Any]:
    from services.artifacts.wiring import loader_from_settings
    from services.pipeline.loaders import load_functions

    try:
        fns = load_functions(settings)
    except ImportError as exc:
        log.warning("model serving wrappers unavailable (%s): heuristic ranking only", exc)
        return {}
    return {kind: loader_from_settings(settings, kind, fn) for kind, fn in fns.items()}


def build_pipeline(settings: Settings, on_swap: Callable[[], None] | None = None,
                   hot_swap: bool = True) -> tuple[Pipeline, Callable[[], None]]:
    """Returns the pipeline and a ``close`` that stops polling and closes connections."""
    client = redis_client(settings)
    state = RedisState(client, settings)
    slot = ModelSlot()
    swapper = HotSwapper(slot, _loaders(settings) if hot_swap else {}, on_swap)
    if swapper.loaders:
        swapper.start(POLL_INTERVAL_S)
    pipeline = Pipeline(settings, state, slot, LazyReader(settings))

    def close() -> None:
        swapper.stop()
        client.close()

    return pipeline, close
