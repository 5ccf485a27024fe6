"""A topic's lane applies its batches in fetch order, one apply at a time: an idle lane applies a batch
on its own as soon as it is queued; the batches that queued up behind an apply are applied together
(records in order, checked as prepared, with the last topic-id lookup), up to ``max_records``; each
apply's follow-up runs once and every batch of the apply waits for it; an apply that fails fails its
own batches only."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

import pytest

from streams.decode import RawRecord
from streams.lanes import FollowUp, Lane
from streams.processor import Prepared

TOPIC = "p-interactions"


def batch(first: int, n: int) -> list[RawRecord]:
    return [RawRecord(TOPIC, 0, first + k, b"{}") for k in range(n)]


def prepared(records: list[RawRecord], lookup: str) -> Prepared:
    ids: asyncio.Future[Mapping[str, str]] = asyncio.get_running_loop().create_future()
    ids.set_result({TOPIC: lookup})
    return Prepared([f"checked{r.offset}" for r in records], float(records[0].offset), ids)


class Recorder:
    """The lane's apply: records what each apply got, and blocks until its gate opens."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.applies: list[tuple[list[int], list[str], float, Mapping[str, str] | None]] = []
        self.gate = asyncio.Event()
        self.follow_ups = 0
        self.fail_at = fail_at

    async def apply(self, records: list[RawRecord], prep: Prepared | None) -> FollowUp:
        ids = await prep.ids if prep is not None and prep.ids is not None else None
        self.applies.append(([r.offset for r in records], list(prep.checked) if prep else [],
                             prep.started if prep else -1.0, ids))
        await self.gate.wait()
        if records[0].offset == self.fail_at:
            raise ConnectionError("redis down for good")

        async def follow_up() -> None:
            self.follow_ups += 1
        return follow_up


async def follow(follow_up: Callable[[], Awaitable[None]]) -> None:
    await follow_up()


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def test_batches_queued_behind_an_apply_are_applied_as_one_in_order() -> None:
    async def run() -> Recorder:
        rec = Recorder()
        lane = Lane(rec.apply, follow, max_records=100)
        b0, b1, b2 = batch(0, 2), batch(2, 3), batch(5, 1)
        d0 = lane.submit(b0, prepared(b0, "old"))
        await settle()
        assert [a[0] for a in rec.applies] == [[0, 1]]  # idle: applied at once, on its own
        d1 = lane.submit(b1, prepared(b1, "mid"))
        d2 = lane.submit(b2, prepared(b2, "new"))
        assert lane.waiting == 6
        rec.gate.set()
        tasks = [await d for d in (d0, d1, d2)]
        await asyncio.gather(*tasks)
        assert tasks[1] is tasks[2] and tasks[0] is not tasks[1]  # one follow-up per apply
        assert lane.waiting == 0 and lane.applies == 2
        return rec

    rec = asyncio.run(run())
    offsets, checked, started, ids = rec.applies[1]
    assert offsets == [2, 3, 4, 5]
    assert checked == ["checked2", "checked3", "checked4", "checked5"]
    assert started == 5.0 and ids == {TOPIC: "new"}  # the lookup started after the last fetch
    assert rec.follow_ups == 2


def test_a_merged_apply_stays_within_max_records_and_an_unprepared_batch_goes_alone() -> None:
    async def run() -> list[list[int]]:
        rec = Recorder()
        lane = Lane(rec.apply, follow, max_records=4)
        first = batch(0, 1)
        done = [lane.submit(first, prepared(first, "t"))]
        await settle()
        for b, prep in ((batch(1, 2), True), (batch(3, 2), True), (batch(5, 1), True), (batch(6, 1), False),
                        (batch(7, 1), True)):
            done.append(lane.submit(b, prepared(b, "t") if prep else None))
        rec.gate.set()
        for d in done:
            await (await d)
        return [a[0] for a in rec.applies]

    assert asyncio.run(run()) == [[0], [1, 2, 3, 4], [5], [6], [7]]


def test_a_failed_apply_fails_its_batches_and_the_lane_goes_on() -> None:
    async def run() -> None:
        rec = Recorder(fail_at=1)
        lane = Lane(rec.apply, follow, max_records=100)
        b0, b1, b2 = batch(0, 1), batch(1, 1), batch(2, 1)
        d0 = lane.submit(b0, prepared(b0, "t"))
        await settle()
        d1, d2 = lane.submit(b1, prepared(b1, "t")), lane.submit(b2, None)
        rec.gate.set()
        await (await d0)
        with pytest.raises(ConnectionError):
            await d1
        await (await d2)
        assert [a[0] for a in rec.applies] == [[0], [1], [2]] and lane.waiting == 0

    asyncio.run(run())
