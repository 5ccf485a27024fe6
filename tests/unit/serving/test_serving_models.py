"""The full funnel with real MODELS objects (ANN index, multi-task ranker) and atomic hot swaps."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from core.protocols import Features
from core.settings import Settings
from models.index import ItemIndex
from models.ranker import MultiTaskRanker, RankerConfig
from models.ranker_serving import RankerServing
from services.pipeline import InMemoryState, ItemInfo, ModelSet, ModelSlot, Pipeline, UserState
from services.pipeline.hotswap import HotSwapper

DIM = 8


class Tower:
    version = "tt-1"

    def user_vector(self, user: Features) -> np.ndarray:
        return np.ones(DIM, np.float32) / np.sqrt(DIM)


class Reader:
    def user_features(self, user_id: str) -> Features:
        return {"history_len": 3.0}

    def item_features(self, item_ids: Sequence[str]) -> list[Features]:
        return [{"ctr_24h": 0.1 * (j % 5)} for j in range(len(item_ids))]


def _world() -> tuple[InMemoryState, ItemIndex]:
    rng = np.random.default_rng(0)
    ids = [f"i{j}" for j in range(200)]
    vecs = rng.standard_normal((200, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    state = InMemoryState(users={"u": UserState("u", recent=["i0"], seen={"i0"}, n_interactions=40)},
                          popularity={"all": {i: float(200 - j) for j, i in enumerate(ids)}},
                          catalog={i: ItemInfo(i, [f"c{j % 7}"], 1.0) for j, i in enumerate(ids)})
    return state, ItemIndex.build(ids, vecs, model_version="tt-1", version="ix-1")


def _ranker(version: str) -> RankerServing:
    cfg = RankerConfig(dense_features=("history_len", "ctr_24h", "signal_popular"))
    return RankerServing(MultiTaskRanker(cfg), version=version)


def test_ann_and_ranker_feed_explains_each_item():
    state, index = _world()
    slot = ModelSlot(ModelSet(ranker=_ranker("rk-1"), index=index, user_tower=Tower()))
    feed = Pipeline(Settings(), state, slot, Reader()).feed("u", n=20).feed
    assert feed.model_version == "rk-1" and feed.index_version == "ix-1" and not feed.degraded
    assert any(it.source == "ann" for it in feed.items)
    exploit = [it for it in feed.items if not it.explore]
    assert all({"click", "deep"} <= it.scores.keys() and it.propensity == 1.0 for it in exploit)
    assert all(0 < it.propensity < 1 for it in feed.items if it.explore)


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
    pipeline = Pipeline(Settings(), state, slot, Reader())
    swapped = threading.Event()
    swapper = HotSwapper(slot, {"ranker": FakeLoader("ranker", [_ranker(f"rk-{k}") for k in range(20)]),
                                "index": FakeLoader("index", [index])}, on_swap=swapped.set)
    versions: set[str] = set()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            feed = pipeline.feed("u", n=10).feed
            assert not feed.degraded and len(feed.items) == 10
            versions.add(feed.model_version)

    thread = threading.Thread(target=serve)
    thread.start()
    for _ in range(20):
        swapper.poll()
        time.sleep(0.02)
    stop.set()
    thread.join()
    assert swapped.is_set() and slot.current.model_version == "rk-19" and len(versions) >= 2
    broken = HotSwapper(ModelSlot(), {"ranker": FakeLoader("ranker", [])})
    broken.poll()
    assert broken.slot.current.missing == ("ranker",)
    assert Pipeline(Settings(), state, broken.slot).feed("u", n=5).feed.degraded
