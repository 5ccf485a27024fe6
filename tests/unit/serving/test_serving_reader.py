"""The serving processes' Feast reader is built in the background: no request waits for the build."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest
from serving_events import click, memory_state

from core.errors import StoreUnavailable
from core.protocols import Features
from core.settings import Settings
from funnel.pipeline import Pipeline
from services.pipeline.build import LazyReader


class Rows:
    def user_features(self, user_id: str) -> Features:
        return {"user_id": user_id, "history_len": 3}

    def item_features(self, item_ids: Sequence[str]) -> list[Features]:
        return [{"item_id": i} for i in item_ids]


def test_reads_fail_fast_while_the_reader_builds_then_succeed():
    release = threading.Event()

    def slow_build() -> Rows:
        release.wait(10)
        return Rows()

    reader = LazyReader(Settings(), build=slow_build).start()
    with pytest.raises(StoreUnavailable, match="not built yet"):
        reader.user_features("u")
    settings = Settings()
    state = memory_state(settings, {"a": [], "b": []}, [click("x", "a")])
    feed = Pipeline(settings, state, reader=reader).feed("u", n=2).feed
    assert not reader.wait(0)  # the feed came back while the build is still held
    assert [it.item_id for it in feed.items] == ["a", "b"]
    assert not feed.degraded  # no ranker: the heuristic serves without Feast's rows
    release.set()
    assert reader.wait(5) and reader.user_features("u")["history_len"] == 3


def test_a_failed_build_is_retried_only_after_the_pause():
    calls: list[float] = []

    def broken() -> Rows:
        calls.append(time.monotonic())
        raise RuntimeError("no registry yet")

    reader = LazyReader(Settings(), build=broken).start()
    assert not reader.wait(5)
    for _ in range(3):
        with pytest.raises(StoreUnavailable, match="no registry yet"):
            reader.item_features(["a"])
    assert len(calls) == 1
    reader.RETRY_S = 0.0
    reader._next_try = 0.0
    with pytest.raises(StoreUnavailable):
        reader.item_features(["a"])
    reader.wait(5)
    assert len(calls) == 2
