"""Builds the real pipeline of a process: ``funnel.pipeline.Pipeline`` over the Redis state, the fast
feature reader and hot-swapped models, on the wall clock."""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from core.errors import StoreUnavailable
from core.protocols import FeatureReader, Features
from core.settings import Settings
from feature_store.online.redis_state import RedisOnlineState, redis_client
from funnel.modelset import ModelSlot
from funnel.pipeline import Pipeline
from services.pipeline.experiments import attach_experiments
from services.pipeline.forgotten import ForgetWatcher
from services.pipeline.hotswap import HotSwapper

log = logging.getLogger(__name__)


def fast_reader(settings: Settings) -> FeatureReader:
    """FEATURES' fast reader over Feast's Redis layout (imports Feast and reads its registry)."""
    module = importlib.import_module("feature_store.reader")
    reader: FeatureReader = module.FastFeatureReader.from_settings(settings)
    return reader


class LazyReader:
    """The FEATURES fast reader, built in a background thread: importing Feast and reading its registry
    take seconds, and the registry may appear after this process starts. Until the reader is built, a
    read raises ``StoreUnavailable`` at once, so the funnel serves without Feast's rows instead of
    holding requests (and the publisher's poll loop) for the build. A failed build is retried at most
    every ``RETRY_S`` seconds."""

    RETRY_S = 30.0

    def __init__(self, settings: Settings, build: Callable[[], FeatureReader] | None = None) -> None:
        self._build = build or (lambda: fast_reader(settings))
        self._reader: FeatureReader | None = None
        self._next_try = 0.0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.error = ""

    def start(self) -> LazyReader:
        """Starts a build unless one is running, the reader exists, or a failure is too recent."""
        with self._lock:
            idle = self._thread is None or not self._thread.is_alive()
            if self._reader is None and idle and time.monotonic() >= self._next_try:
                self._thread = threading.Thread(target=self._run, name="feature-reader", daemon=True)
                self._thread.start()
        return self

    def wait(self, timeout_s: float) -> bool:
        """True once the reader is built (waits up to ``timeout_s`` for a running build)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
        return self._reader is not None

    def _run(self) -> None:
        try:
            self._reader = self._build()
        except Exception as exc:  # noqa: BLE001 - any failure: serve without Feast rows, retry later
            self._next_try = time.monotonic() + self.RETRY_S
            self.error = f"{type(exc).__name__}: {exc}"
            log.warning("feature reader unavailable, retrying in %.0fs: %s", self.RETRY_S, self.error)

    def _get(self) -> FeatureReader:
        reader = self._reader
        if reader is not None:
            return reader
        self.start()
        raise StoreUnavailable(f"feature reader not built yet{' (' + self.error + ')' if self.error else ''}")

    def pipelined(self) -> FeatureReader | None:
        """The built reader (its commands can join the state's round trip), or None (not yet)."""
        reader = self._reader
        if reader is None:
            self.start()
        return reader

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
        swapper.start(settings.artifacts.poll_interval_s)
    pipeline = Pipeline(settings, state, slot, LazyReader(settings).start())
    stop_experiments = attach_experiments(pipeline, settings, pinned=hot_swap)
    watcher = ForgetWatcher(settings, pipeline).start()  # the eraser's deletions leave every cache

    def close() -> None:
        watcher.close()
        stop_experiments()
        swapper.stop()
        client.close()

    return pipeline, close
