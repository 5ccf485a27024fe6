"""Hypothesis on the worker's batch path (``streams.processor.BatchProcessor`` over the real Redis writer):
a batch of valid interactions with arbitrary bad records (random bytes, JSON that breaks a field)
mixed in at random places. The worker never crashes; every record is either applied or dead-lettered
with a reason (the DLQ gets exactly the bad ones, each naming its offset); and the Redis state equals
the state of the same valid records processed without the bad ones (under another key prefix)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streams_harness import assert_same, dump

from core.events import DeadLetter, Interaction, ItemUpsert, encode
from core.settings import Settings, load_settings
from core.topics import Topics
from feature_store import transforms as tf
from feature_store.online import resp
from feature_store.online.batch import effect_params
from feature_store.online.keys import Keys
from feature_store.online.writer import OnlineWriter, StatsDelta
from streams.decode import RawRecord, Skew
from streams.handoff_child import Child
from streams.metrics import WorkerMetrics
from streams.processor import BatchProcessor

pytestmark = pytest.mark.integration
NOW = time.time()
ITEMS = [f"i{k}" for k in range(6)]
valid = st.builds(lambda u, i, t, dt: Interaction(event_id=uuid.uuid4().hex, user_id=u, item_id=i, type=t,
                                                   timestamp=NOW - dt),
                  st.sampled_from(["u1", "u2", "u3"]), st.sampled_from(ITEMS),
                  st.sampled_from(["click", "like", "purchase", "skip", "impression"]),
                  st.floats(min_value=1, max_value=3600))
broken_json = st.fixed_dictionaries({"event_id": st.just("bad"), "user_id": st.just("u1"),
                                     "item_id": st.just("i1")}).flatmap(
    lambda base: st.sampled_from([
        {**base, "type": "teleport", "timestamp": NOW},
        {**base, "type": "click"},
        {**base, "type": "click", "timestamp": NOW + 10 * 86400},
        {**base, "type": "click", "timestamp": NOW, "propensity": 7},
        {**base, "type": "click", "timestamp": NOW, "surprise": 1},
    ])).map(lambda d: json.dumps(d).encode())
bad = st.binary(max_size=300).filter(lambda b: not b.strip().startswith(b"{")) | broken_json


class Dlq:
    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    async def __call__(self, topic: str, key: bytes | None, value: bytes) -> Awaitable[Any]:
        if topic.endswith(".dlq"):  # (feed triggers go through the same producer)
            self.letters.append(DeadLetter.model_validate_json(value))
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


async def _run(s: Settings, prefix: str, raws: list[bytes]) -> Dlq:
    target = resp.connect(s.redis.url or "", 1.0, 30.0)
    try:
        params = tf.TransformParams.from_settings(s)
        writer = OnlineWriter(target, Keys(prefix), effect_params(s), 3600, params)
        stub = [ItemUpsert(item_id=i, categories=["c"], created_at=NOW - 86400, timestamp=NOW - 86400)
                for i in ITEMS]
        await writer.apply_items([(None, it) for it in stub], {}, {}, {}, StatsDelta("items"))
        dlq = Dlq()
        child = Child(Topics(prefix).feed_triggers, None, dlq)  # the worker's triggers, in process
        proc = BatchProcessor(Topics(prefix), writer, dlq, WorkerMetrics(), Skew(3600.0, 86400.0),
                              handoff=child)
        records = [RawRecord(f"{prefix}interactions", 0, k, raw, NOW) for k, raw in enumerate(raws)]
        follow_up = await proc.process("interactions", records)
        await follow_up()
        return dlq
    finally:
        await target.close()


def test_bad_records_are_dead_lettered_and_change_nothing(redis_url: str, tmp_path_factory: Any) -> None:
    s = load_settings(data_dir=str(tmp_path_factory.mktemp("fuzz")), redis={"url": redis_url})

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(good=st.lists(valid, min_size=1, max_size=12), junk=st.lists(bad, max_size=6), data=st.data())
    def run(good: list[Interaction], junk: list[bytes], data: st.DataObject) -> None:
        raws = [encode(e) for e in good]
        for raw in junk:
            raws.insert(data.draw(st.integers(0, len(raws))), raw)
        run_id = uuid.uuid4().hex[:8]
        mixed, clean = f"fz{run_id}m:", f"fz{run_id}c:"
        dlq = asyncio.run(_run(s, mixed, raws))
        assert asyncio.run(_run(s, clean, [encode(e) for e in good])).letters == []
        bad_offsets = sorted(k for k, raw in enumerate(raws) if raw not in {encode(e) for e in good})
        assert sorted(letter.offset for letter in dlq.letters) == bad_offsets
        assert all(letter.reason for letter in dlq.letters)
        assert_same(dump(s, mixed), dump(s, clean))

    run()
