"""On a Redis Cluster a batch is applied one script per shard: shared writes, then the users' own
writes, then watermarks and stats. A worker that dies between two scripts leaves some shards with the
batch and others without it. The next owner replays a batch that covers the same records and more:
every event is applied exactly once all the same (shards that have an event's shared writes skip
them, events whose user writes landed are recognised by their dedupe marker), so the state and the
counters equal a run without the crash. Deterministic: the crash is injected between the scripts."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from streams_harness import (
    assert_same,
    cluster_url,  # noqa: F401 - fixture
    dump,
    interactions,
    items,
    stats,
    with_duplicates,
)

from core.events import Interaction
from core.settings import Settings
from feature_store.online import resp
from feature_store.online.batch import effect_params
from feature_store.online.keys import Keys
from feature_store.online.resp import Command
from feature_store.online.writer import Coord, OnlineWriter, StatsDelta
from feature_store.transforms import TransformParams
from streams.content import vectors

pytestmark = pytest.mark.integration
TP = ("t@id", 0)
BATCH = 400


class Crash(ConnectionError):
    pass


class CrashingCluster:
    """Passes everything through until the ``at``-th batch of scripts, of which it sends only the
    first half (the other shards never see them), then raises like a lost connection."""

    cluster = True

    def __init__(self, inner: resp.Cluster, at: int) -> None:
        self.inner, self.at, self.scripts = inner, at, 0

    async def execute(self, cmds: Sequence[Command]) -> list[Any]:
        if cmds and all(c[1].startswith(b"*") and b"EVALSHA" in c[1][:40] for c in cmds):
            self.scripts += 1
            if self.scripts == self.at:
                await self.inner.execute(cmds[: max(1, len(cmds) // 2)])
                raise Crash("worker died between two shards")
        return await self.inner.execute(cmds)

    async def close(self) -> None:
        await self.inner.close()


def _settings(s: Settings, url: str, prefix: str) -> Settings:
    return s.model_copy(update={"redis": s.redis.model_copy(update={"url": url, "key_prefix": prefix})})


def _writer(s: Settings, client: Any) -> OnlineWriter:
    return OnlineWriter(client, Keys(s.redis.key_prefix), effect_params(s), 3600,
                        TransformParams.from_settings(s))


async def _apply(w: OnlineWriter, stream: list[Interaction], lo: int, hi: int) -> None:
    """Records ``lo..hi-1`` of partition 0, as the consumer hands them over (watermark read first)."""
    marks = await w.watermarks([TP])
    events = [(Coord(TP, k), stream[k]) for k in range(lo, hi) if k > marks[TP]]
    stats = StatsDelta("interactions", len(events))
    await w.apply_interactions(events, {TP: hi - 1}, marks, stats)


async def _run(s: Settings, stream: list[Interaction], crash_at: int | None) -> None:
    catalog = items(30, stream[0].timestamp)
    client = resp.connect(s.redis.url or "", 1.0, 30.0)
    w = _writer(s, client)
    await w.apply_items([(None, it) for it in catalog], vectors(catalog), {}, {}, StatsDelta("items"))
    cut = 4 * BATCH
    for lo in range(0, cut, BATCH):
        await _apply(w, stream, lo, lo + BATCH)
    if crash_at is not None:
        dying = _writer(s, CrashingCluster(resp.connect(s.redis.url or "", 1.0, 30.0), crash_at))
        with pytest.raises(Crash):
            await _apply(dying, stream, cut, cut + BATCH)
        w = _writer(s, client)  # the next owner: nothing cached
    for lo in range(cut, len(stream), BATCH + 150):  # other batch boundaries than the crashed one
        await _apply(w, stream, lo, min(lo + BATCH + 150, len(stream)))
    await client.close()


@pytest.mark.parametrize("crash_at", [1, 2], ids=["between-shared-shards", "between-user-shards"])
def test_a_batch_cut_between_shards_is_resumed_exactly_once(settings: Settings, cluster_url: str,  # noqa: F811
                                                             crash_at: int) -> None:
    stream = with_duplicates(interactions(3000, users=50, n_items=30, now=1.8e9), 0.05, seed=9)
    clean = _settings(settings, cluster_url, f"{settings.redis.key_prefix}clean:")
    crashed = _settings(settings, cluster_url, f"{settings.redis.key_prefix}crash:")
    asyncio.run(_run(clean, stream, None))
    asyncio.run(_run(crashed, stream, crash_at))
    a, b = stats(clean), stats(crashed)
    for name in ("interactions:processed", "interactions:duplicates", "events_processed"):
        assert b[name] == a[name], name
    if crash_at == 2:
        assert b["interactions:resumed"] > 0, b  # events whose user writes had landed were recognised
    assert_same(dump(crashed, crashed.redis.key_prefix), dump(clean, clean.redis.key_prefix))
