"""Atomic hot swaps of real MODELS objects (ANN index, multi-task ranker) under a serving funnel."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
from serving_events import click, memory_state

from core.settings import Settings
from feature_store.online.memory_state import MemoryOnline
from funnel.modelset import ModelSlot
from funnel.pipeline import Pipeline
from models.index import ItemIndex
from models.ranker import MultiTaskRanker, RankerConfig
from models.ranker_serving import RankerServing
from services.pipeline.hotswap import HotSwapper

DIM = 8


def _world() -> tuple[MemoryOnline, ItemIndex]:
    """60 items, each clicked by a few users; user ``u`` has clicked i0 five times."""
    ids = [f"i{j}" for j in range(60)]
    vecs = np.random.default_rng(0).standard_normal((60, DIM)).astype(np.float32)
    events = [click(f"c{j}-{k}", i) for j, i in enumerate(ids) for k in range(1 + j % 3)]
    state = memory_state(Settings(), {i: [f"c{j % 7}"] for j, i in enumerate(ids)},
                         [*events, *(click("u", "i0", 300 - k) for k in range(5))])
    return state, ItemIndex.build(ids, vecs / np.linalg.norm(vecs, axis=1, keepdims=True), version="ix-1")


def _ranker(version: str) -> RankerServing:
    cfg = RankerConfig(dense_features=("user_history_len", "item_ctr_24h", "popular_score", "content_sim"))
    return RankerServing(MultiTaskRanker(cfg), version=version)


class FakeLoader:
    def __init__(self, kind: str, values: list[Any]) -> None:
        self.kind, self.values, self.value = kind, values, None
        self.store = self

    def poll(self) -> bool:
        if not self.values:
            return False
        self.value = self.values.pop(0)
        return True

    def latest_version(self, kind: str) -> str | None:
        return "v"


def test_hot_swap_never_fails_a_request_and_missing_model_is_degraded():
    state, index = _world()
    slot = ModelSlot()
    pipeline = Pipeline(Settings(), state, slot, reader=state)
    swapped = threading.Event()
    swapper = HotSwapper(slot, {"ranker": FakeLoader("ranker", [_ranker(f"rk-{k}") for k in range(20)]),
                                "index": FakeLoader("index", [index])}, on_swap=swapped.set)
    versions: set[str] = set()
    failures: list[str] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            feed = pipeline.feed("u", n=10).feed
            if feed.degraded or len(feed.items) != 10:
                failures.append(f"{feed.degraded} {len(feed.items)}")
            versions.add(feed.model_version)

    thread = threading.Thread(target=serve)
    thread.start()
    for _ in range(20):
        swapper.poll()
        time.sleep(0.02)
    stop.set()
    thread.join()
    assert failures == []
    assert swapped.is_set() and slot.current.model_version == "rk-19" and len(versions) >= 2
    assert slot.current.index_version == "ix-1"
    broken = HotSwapper(ModelSlot(), {"ranker": FakeLoader("ranker", [])})
    broken.poll()
    assert broken.slot.current.missing == ("ranker",)
    assert Pipeline(Settings(), state, broken.slot).feed("u", n=5).feed.degraded
