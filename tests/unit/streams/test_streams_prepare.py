"""Batches are prepared ahead (decoded, validated, topic-id lookup started) while the topic's previous
batch is applied, and still applied strictly in order per topic; a prepared batch is parsed exactly as
an unprepared one (replays, dead letters, watermarks) and a retried batch looks the topic ids up again."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition

from core.errors import BrokerUnavailable
from core.events import EventError
from core.settings import load_settings
from core.topics import Topics
from streams.app import ConsumerLoop, WorkerState
from streams.decode import RawRecord, Skew
from streams.metrics import WorkerMetrics
from streams.processor import BatchProcessor, Prepared

NOW = 1_700_000_000.0
TOPIC = "p-interactions"


def click(k: int) -> bytes:
    return json.dumps({"event_id": f"e{k}", "user_id": "u1", "item_id": "i1", "type": "click",
                       "timestamp": NOW}).encode()


class Log:
    """Records the order of prepare / apply start / apply end, per batch (its first offset)."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, int]] = []
        self.gates: dict[int, asyncio.Event] = {}


class FakeProcessor:
    def __init__(self, log: Log) -> None:
        self.log, self.writer = log, SimpleNamespace(forget=lambda: None)

    def prepare(self, base: str, records: Sequence[RawRecord]) -> Prepared:
        self.log.steps.append(("prepare", records[0].offset))
        return Prepared([], 0.0)

    async def process(self, base: str, records: Sequence[RawRecord],
                      prepared: Prepared | None = None) -> Callable[[], Awaitable[None]]:
        first = records[0].offset
        assert prepared is not None
        self.log.steps.append(("apply", first))
        await self.log.gates.setdefault(first, asyncio.Event()).wait()
        self.log.steps.append(("applied", first))

        async def follow_up() -> None:
            return None
        return follow_up


class Guard:
    async def check(self) -> bool:
        return True


def msgs(first: int, n: int) -> dict[TopicPartition, list[Any]]:
    return {TopicPartition(TOPIC, 0): [SimpleNamespace(topic=TOPIC, partition=0, offset=first + j,
                                                       value=click(first + j), timestamp=0, key=None)
                                       for j in range(n)]}


def test_next_batch_is_prepared_while_the_previous_applies_and_applied_after_it(tmp_path: Path) -> None:
    settings = load_settings(data_dir=str(tmp_path), kafka={"bootstrap_servers": "127.0.0.1:9",
                                                            "topic_prefix": "p-"})
    log = Log()

    async def run() -> None:
        state = WorkerState(None, WorkerMetrics(), FakeProcessor(log))  # type: ignore[arg-type]
        loop = ConsumerLoop(settings, state, Guard())  # type: ignore[arg-type]
        loop._update_lag = lambda offsets: None  # type: ignore[method-assign]  # (not assigned)
        await loop._handle(msgs(0, 3))
        for _ in range(5):
            await asyncio.sleep(0)
        await loop._handle(msgs(3, 3))
        for _ in range(5):
            await asyncio.sleep(0)
        assert log.steps == [("prepare", 0), ("apply", 0), ("prepare", 3)]  # 3 waits for 0
        log.gates.setdefault(0, asyncio.Event()).set()
        log.gates.setdefault(3, asyncio.Event()).set()
        await loop.drain()
        assert log.steps[3:] == [("applied", 0), ("apply", 3), ("applied", 3)]
        assert loop._done == {TopicPartition(TOPIC, 0): 5}
        await loop.consumer.stop()

    asyncio.run(run())


class SlowFollowUps(FakeProcessor):
    """Applies return when ``applying`` is set; follow-ups (the archive's, say) wait for ``following``."""

    def __init__(self, log: Log) -> None:
        super().__init__(log)
        self.applying, self.following = asyncio.Event(), asyncio.Event()
        self.applies: list[list[int]] = []

    async def process(self, base: str, records: Sequence[RawRecord],
                      prepared: Prepared | None = None) -> Callable[[], Awaitable[None]]:
        self.applies.append([r.offset for r in records])
        await self.applying.wait()
        return self.following.wait  # type: ignore[return-value]


def test_the_fetch_waits_on_unapplied_records_not_on_follow_ups(tmp_path: Path) -> None:
    """batch_size 2: at most 8 records fetched and not applied; 32 applied but not followed up."""
    settings = load_settings(data_dir=str(tmp_path), kafka={"bootstrap_servers": "127.0.0.1:9",
                                                            "topic_prefix": "p-"}, worker={"batch_size": 2})

    async def run() -> None:
        proc = SlowFollowUps(Log())
        loop = ConsumerLoop(settings, WorkerState(None, WorkerMetrics(), proc),  # type: ignore[arg-type]
                            Guard())  # type: ignore[arg-type]
        loop._update_lag = lambda offsets: None  # type: ignore[method-assign]
        proc.applying.set()
        for k in range(10):  # 20 records applied, none followed up: the fetch goes on
            await asyncio.wait_for(loop._handle(msgs(2 * k, 2)), 1.0)
            await asyncio.sleep(0)
        assert sum(w.records for w in loop.state.in_flight) == 20
        proc.applying.clear()
        await asyncio.sleep(0)
        for k in range(10, 14):  # the apply of 20-21 is held; 28 records: 8 fetched and waiting
            await asyncio.wait_for(loop._handle(msgs(2 * k, 2)), 1.0)
        blocked = asyncio.ensure_future(loop._handle(msgs(28, 2)))  # 10 waiting: over the bound
        await asyncio.sleep(0.05)
        assert not blocked.done()
        proc.applying.set()
        await asyncio.wait_for(blocked, 1.0)  # the held apply returned, then the rest as one
        assert proc.applies[-2:] == [[20, 21], [22, 23, 24, 25, 26, 27, 28, 29]]
        assert loop._done == {}  # nothing followed up, nothing to commit
        proc.following.set()
        await loop.drain()
        assert loop._done == {TopicPartition(TOPIC, 0): 29}
        await loop.consumer.stop()

    asyncio.run(run())


class Writer:
    def __init__(self, marks: Mapping[tuple[str, int], int]) -> None:
        self.marks = marks

    async def watermarks(self, tps: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return {tp: self.marks.get(tp, -1) for tp in tps}


class Fence:
    def __init__(self) -> None:
        self.calls: list[float] = []
        self.down = False

    async def __call__(self, since: float) -> Mapping[str, str]:
        self.calls.append(since)
        if self.down:
            raise BrokerUnavailable("broker down")
        return {TOPIC: "tid"}


def processor(marks: Mapping[tuple[str, int], int]) -> tuple[BatchProcessor, Fence]:
    proc = BatchProcessor(Topics("p-"), Writer(marks), None, WorkerMetrics(),  # type: ignore[arg-type]
                          Skew(3600.0, 86400.0), clock=lambda: NOW)
    fence = Fence()
    proc.fence = fence
    return proc, fence


RECORDS = [RawRecord(TOPIC, 0, k, b"{bad" if k % 2 else click(k)) for k in range(5)]


@pytest.mark.parametrize("ahead", [False, True])
def test_a_prepared_batch_parses_as_an_unprepared_one(ahead: bool) -> None:
    proc, fence = processor({("p-interactions@tid", 0): 1})  # offsets 0 and 1 are replays

    async def run() -> Any:
        prep = proc.prepare("interactions", RECORDS)
        assert isinstance(prep.checked[1], EventError) and not isinstance(prep.checked[0], EventError)
        started = prep.ids
        ids = await proc._ids(prep if ahead else Prepared(prep.checked, prep.started))
        if not ahead:
            assert started is not None
            await started
        return await proc._parse(RECORDS, prep.checked, ids)

    parsed = asyncio.run(run())
    assert [r.offset for r, _ in parsed.replayed] == [0]
    assert [r.offset for r, _ in parsed.new] == [2, 4]
    assert [d.record.offset for d in parsed.dead] == [3]  # the replayed bad record is not dead-lettered
    assert parsed.offsets == {("p-interactions@tid", 0): 4} and parsed.redelivered == 2
    assert len(fence.calls) == (1 if ahead else 2)


def test_the_lookup_starts_at_prepare_and_a_retried_batch_looks_up_again() -> None:
    proc, fence = processor({})

    async def run() -> None:
        fence.down = True
        prep = proc.prepare("interactions", RECORDS)
        await asyncio.sleep(0)
        assert fence.calls == [prep.started]  # started before any apply
        with pytest.raises(BrokerUnavailable):
            await proc._ids(prep)
        fence.down = False
        assert await proc._ids(prep) == {TOPIC: "tid"}
        assert fence.calls == [prep.started, prep.started]

    asyncio.run(run())
