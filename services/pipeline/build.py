"""Builds the real pipeline of a process: ``funnel.pipeline.Pipeline`` over the Redis state, the fast
feature reader and hot-swapped models, on the wall clock."""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from core.errors import StoreUnavailable
from core.protocols import FeatureReader, Features
from core.settings import Settings
from feature_store.online.redis_state import RedisOnlineState, redis_client
from funnel.modelset import ModelSlot
from funnel.pipeline import Pipeline
from services.pipeline.hotswap import HotSwapper

log = logging.getLogger(__name__)
POLL_INTERVAL_S = 10.0


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
    state = RedisOnlineState(client, settings)
    slot = ModelSlot()
    swapper = HotSwapper(slot, _loaders(settings) if hot_swap else {}, on_swap)
    if swapper.loaders:
        swapper.start(POLL_INTERVAL_S)
    pipeline = Pipeline(settings, state, slot, LazyReader(settings))

    def close() -> None:
        swapper.stop()
        client.close()

    return pipeline, close
