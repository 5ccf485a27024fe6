"""A batch that crashed between its shard stages on a Redis Cluster, replayed by a new owner whose
batches cut that partition's records differently and mix in another partition's.

The crashed batch (a coalesced one, or any large fetch) moved each shard's applied offset for its
partition far ahead. The new owner's first batch covers only a prefix of those records, plus records of
another partition that write to the same shards (popularity slices are shared by every partition). A
shard's guard moves each partition of the batch to the batch's offset: before the fix it moved the
crashed partition's applied offset back to the prefix's end, and the next batch applied the rest of the
crashed batch's shared writes on those shards a second time (a popularity increment counted twice).
The applied offsets only grow; the state equals a run without the crash."""

from __future__ import annotations

import asyncio
import zlib

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
from test_streams_cluster_resume import Crash, CrashingCluster, _settings, _writer

from core.events import Interaction
from core.settings import Settings
from feature_store.online import resp
from feature_store.online.writer import TP, Coord, OnlineWriter, StatsDelta
from streams.content import vectors

pytestmark = pytest.mark.integration
P0, P1 = ("t@id", 0), ("t@id", 1)
BATCH = 300


def _partitions(stream: list[Interaction]) -> dict[TP, list[Interaction]]:
    """Each user's events on one partition (as keyed by the producer), in stream order."""
    out: dict[TP, list[Interaction]] = {P0: [], P1: []}
    for ev in stream:
        out[(P0, P1)[zlib.crc32(ev.user_id.encode()) % 2]].append(ev)
    return out


async def _apply(w: OnlineWriter, parts: dict[TP, list[Interaction]],
                 spans: dict[TP, tuple[int, int]]) -> None:
    """Records ``lo..hi-1`` of each partition in ``spans`` as one batch (watermarks read first)."""
    marks = await w.watermarks(sorted(spans))
    events: list[tuple[Coord | None, Interaction]] = []
    offsets: dict[TP, int] = {}
    for tp, (lo, hi) in spans.items():
        new = [(Coord(tp, k), parts[tp][k]) for k in range(lo, hi) if k > marks[tp]]
        events += new
        if new:
            offsets[tp] = hi - 1
    stats = StatsDelta("interactions", len(events))
    await w.apply_interactions(events, offsets, marks, stats)


async def _run(s: Settings, parts: dict[TP, list[Interaction]], crash: bool) -> None:
    first = next(iter(parts[P0]))
    catalog = items(30, first.timestamp)
    client = resp.connect(s.redis.url or "", 1.0, 30.0)
    w = _writer(s, client)
    await w.apply_items([(None, it) for it in catalog], vectors(catalog), {}, {}, StatsDelta("items"))
    await _apply(w, parts, {P0: (0, BATCH), P1: (0, BATCH)})
    cut, n0, n1 = BATCH, len(parts[P0]), len(parts[P1])
    if crash:  # 4 batches of P0 as one, cut after its shared stage (the user writes half sent)
        dying = _writer(s, CrashingCluster(resp.connect(s.redis.url or "", 1.0, 30.0), 2))
        with pytest.raises(Crash):
            await _apply(dying, parts, {P0: (cut, cut + 4 * BATCH)})
        w = _writer(s, client)  # the new owner of P0: nothing cached
    lo0, lo1 = cut, BATCH
    while lo0 < n0 or lo1 < n1:  # a prefix of the crashed records with P1's, then the rest
        spans = {tp: (lo, min(lo + BATCH, n)) for tp, lo, n in ((P0, lo0, n0), (P1, lo1, n1)) if lo < n}
        await _apply(w, parts, spans)
        lo0, lo1 = lo0 + BATCH, lo1 + BATCH
    await client.close()


def test_a_replayed_prefix_mixed_with_another_partition_applies_each_event_once(
        settings: Settings, cluster_url: str) -> None:  # noqa: F811
    stream = with_duplicates(interactions(4000, users=60, n_items=30, now=1.8e9), 0.05, seed=11)
    parts = _partitions(stream)
    assert len(parts[P0]) > 5 * BATCH and len(parts[P1]) > 5 * BATCH
    clean = _settings(settings, cluster_url, f"{settings.redis.key_prefix}clean:")
    crashed = _settings(settings, cluster_url, f"{settings.redis.key_prefix}crash:")
    asyncio.run(_run(clean, parts, False))
    asyncio.run(_run(crashed, parts, True))
    a, b = stats(clean), stats(crashed)
    for name in ("interactions:processed", "interactions:duplicates", "events_processed"):
        assert b[name] == a[name], name
    assert b["interactions:resumed"] > 0, b  # the crash did land between the user shards
    assert_same(dump(crashed, crashed.redis.key_prefix), dump(clean, clean.redis.key_prefix))
