"""The writer keeps the watermarks it read or moved, so a partition's next batch is sorted into new and
replayed records without a round trip (``OnlineWriter.watermarks``). A cached watermark that is stale
never makes a record skipped or applied on its word: every watermark the batch was sorted against is
a guard of its script, the partitions whose records were all replayed included. Another owner's move
(a zombie's view) and a Redis that lost its last writes both end in a Conflict, after which the
watermarks are read again."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
import redis
from streams_harness import interactions

from core.events import Interaction
from core.settings import load_settings
from feature_store.online import resp
from feature_store.online.batch import effect_params
from feature_store.online.keys import Keys
from feature_store.online.reads import field_of
from feature_store.online.resp import Command
from feature_store.online.writer import Conflict, Coord, OnlineWriter, StatsDelta
from feature_store.transforms import TransformParams

pytestmark = pytest.mark.integration
P0, P1 = ("t@id", 0), ("t@id", 1)


class Counting:
    """Passes every round trip through, counting them."""

    cluster = False

    def __init__(self, inner: Any) -> None:
        self.inner, self.trips = inner, 0

    async def execute(self, cmds: Sequence[Command]) -> list[Any]:
        self.trips += 1
        return await self.inner.execute(cmds)

    async def close(self) -> None:
        await self.inner.close()


async def _apply(w: OnlineWriter, part: tuple[str, int], evs: Sequence[Interaction], lo: int,
                 marks: dict[tuple[str, int], int]) -> None:
    pairs = [(Coord(part, lo + k), ev) for k, ev in enumerate(evs)]
    await w.apply_interactions(pairs, {part: lo + len(evs) - 1}, marks,
                               StatsDelta("interactions", len(pairs)))


def test_cached_watermarks_are_guarded(redis_url: str) -> None:
    prefix = f"wm{uuid.uuid4().hex[:8]}:"
    keys, s = Keys(prefix), load_settings()
    evs = interactions(30, 4, 6, time.time())
    raw = redis.Redis.from_url(redis_url)

    async def run() -> list[Any]:
        client = Counting(resp.connect(redis_url, 1.0, 30.0))
        w = OnlineWriter(client, keys, effect_params(s), 3600, TransformParams.from_settings(s))
        try:
            await _apply(w, P0, evs[:10], 0, await w.watermarks([P0, P1]))  # P0 0..9
            trips = client.trips
            cached = await w.watermarks([P0, P1])
            out: list[Any] = [cached, client.trips - trips]
            raw.hset(keys.watermarks, field_of(P0), 20)  # another owner moved it
            with pytest.raises(Conflict):
                await _apply(w, P0, evs[10:15], 10, dict(cached))
            out.append(await w.watermarks([P0]))
            await _apply(w, P0, evs[21:25], 21, await w.watermarks([P0, P1]))  # P0 now at 24
            raw.hset(keys.watermarks, field_of(P0), 3)  # Redis lost writes: the cache is ahead
            marks = await w.watermarks([P0, P1])
            out.append(marks)
            # P0's records 4..9 look replayed against the cached 24; only P1's are new: still a Conflict
            with pytest.raises(Conflict):
                await _apply(w, P1, evs[25:30], 0, marks)
            out.append(await w.watermarks([P0, P1]))
            return out
        finally:
            await client.close()

    try:
        cached, trips, moved, ahead, reread = asyncio.run(run())
    finally:
        raw.close()
    assert cached == {P0: 9, P1: -1} and trips == 0
    assert moved == {P0: 20}
    assert ahead == {P0: 24, P1: -1}
    assert reread == {P0: 3, P1: -1}
