"""The event archive is written by a child process (``streams.archive_child``) from the records' bytes
as consumed. For the same batches its files (paths, columns, payloads) are exactly those the worker
wrote in process from its validated pydantic objects before (1a14562's ``sinks.ArchiveSink``, written
out below as the reference), whether run as a child or in process; only the records the batch applied
(fresh, or applied by a crashed attempt) and the replayed ones are archived. A child that dies with a
batch pending fails it with a retryable error, counted in ``child_exits``, and the retry starts a new
child that writes the batch."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from core.settings import load_settings
from core.topics import INTERACTIONS, ITEMS, USERS, Topics
from feature_store.archive import ParquetArchive
from feature_store.online.writer import Applied
from streams.archive_child import ArchiveWriter
from streams.decode import RawRecord, Skew, validate
from streams.handoff import ArchiveHandoff
from streams.kafka_errors import is_retryable
from streams.metrics import WorkerMetrics
from streams.processor import Archive, BatchProcessor, Parsed

ROOT = Path(__file__).resolve().parents[3]
CHILD = ("-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); import streams.archive_child as c; c.main()")
T0 = 1_800_000_000
SKEW = Skew(3 * 86400, 30 * 86400)
CATS = {"i1": ["jazz", "rock"], "i2": [], "i3": ["caf\u00e9"]}
# As producers send them: fields in any order, ints for floats, escapes, defaults left out.
RAW = {
    INTERACTIONS: [
        b'{"user_id":"u1","event_id":"e1","item_id":"i1","type":"click","timestamp":1800000000}',
        b'{"event_id":"e2","user_id":"u\\u00fc","item_id":"i2","type":"dwell","value":12.5,'
        b'"timestamp":1800000001.25,"context":{"device":"ios"},"feed_id":"f1","position":3,'
        b'"propensity":0.25}',
        b'{"event_id":"e3","user_id":"u1","item_id":"i3","type":"like","timestamp":1800086401}',
        b'{"event_id":"e4","user_id":"u2","item_id":"i1","type":"impression","timestamp":1800000002}',
        b'{"event_id":"e1","user_id":"u1","item_id":"i1","type":"click","timestamp":1800000000}',  # duplicate
    ],
    ITEMS: [b'{"item_id":"i1","title":"Caf\\u00e9","categories":["jazz","rock"],"created_at":1799990000,'
            b'"timestamp":1800000001,"attributes":{"year":1999,"new":true,"score":0.5}}',
            b'{"item_id":"i2","created_at":1799990000.5,"active":false,"timestamp":1800000003}'],
    USERS: [b'{"user_id":"u1","segment":"a","timestamp":1800000002}',
            b'{"timestamp":1800000004,"user_id":"u2","attributes":{"age":31}}'],
}


class Writer:
    """The categories of replayed records' items (``OnlineWriter.categories``)."""

    async def categories(self, items: Sequence[str]) -> dict[str, list[str]]:
        return {i: CATS[i] for i in items if i in CATS}


def pairs(base: str, first: int) -> list[tuple[RawRecord, Any]]:
    """The records on partitions 0 and 1, offsets from ``first``, each with its validated event."""
    return [(RawRecord(f"p-{base}", k % 2, first + k, raw), validate(base, raw, T0 + 10, SKEW))
            for k, raw in enumerate(RAW[base])]


def batches() -> list[tuple[str, Parsed, Applied | None]]:
    """Interactions: e1 fresh, e2 applied by a crashed attempt, e3 and e4 fresh, e1 again a duplicate,
    and the first three replayed (below the watermark); items and users: new and replayed."""
    out: list[tuple[str, Parsed, Applied | None]] = []
    for base in (INTERACTIONS, ITEMS, USERS):
        new, old = pairs(base, 100), pairs(base, 10)[:3]
        applied = None
        if base == INTERACTIONS:
            evs = [ev for _, ev in new]
            applied = Applied(fresh=[evs[0], evs[2], evs[3]], earlier=[evs[1]], categories=CATS)
        out.append((base, Parsed(new, old, [], {}, {}), applied))
    return out


def written_before(root: Path) -> None:
    """What 1a14562's ``ArchiveSink`` wrote for :func:`batches`, from the worker's pydantic objects."""
    arc = ParquetArchive(root)
    for base, parsed, applied in batches():
        calls = [(parsed.new + parsed.replayed, None)]
        if applied is not None:
            keep = {id(ev) for ev in applied.fresh + applied.earlier}
            calls = [([(r, e) for r, e in parsed.new if id(e) in keep], CATS), (parsed.replayed, CATS)]
        for group, cats in calls:
            for part in sorted({rec.partition for rec, _ in group}):
                mine = [(rec, ev) for rec, ev in group if rec.partition == part]
                offs = [rec.offset for rec, _ in mine]
                arc.append(base, [_place(rec, ev) for rec, ev in mine], partition=part,
                           first_offset=min(offs), last_offset=max(offs),
                           payloads=[_payload(rec, ev, cats) for rec, ev in mine])


def _place(rec: RawRecord, ev: Any) -> dict[str, Any]:
    out = {"timestamp": ev.timestamp, "_offset": rec.offset}
    name = next(n for n in ("event_id", "item_id", "user_id") if getattr(ev, n, None) is not None)
    return {**out, name: getattr(ev, name)}


def _payload(rec: RawRecord, ev: Any, cats: dict[str, list[str]] | None) -> str:
    extra = f',"_offset":{rec.offset}}}'
    if cats is not None:
        extra = f',"categories":{json.dumps(cats.get(ev.item_id, []))}' + extra
    return str(ev.model_dump_json()[:-1] + extra)


def contents(root: Path) -> dict[str, dict[str, list[Any]]]:
    return {str(f.relative_to(root)): pq.read_table(f).to_pydict() for f in sorted(root.rglob("*.parquet"))}


async def archive_through(archive: Archive) -> None:
    proc = BatchProcessor(Topics("p-"), Writer(), None, WorkerMetrics(), SKEW,  # type: ignore[arg-type]
                          archive=archive)
    for base, parsed, applied in batches():
        await asyncio.wait_for(proc._archive(base, parsed, applied), 60)


def test_the_child_writes_what_the_worker_wrote_in_process(tmp_path: Path) -> None:
    written_before(tmp_path / "before")
    expected = contents(tmp_path / "before")

    async def run() -> None:
        local = ArchiveWriter(ParquetArchive(tmp_path / "local"), interval_s=0.0)
        await archive_through(local)
        await local.close()
        child = ArchiveHandoff(load_settings(data_dir=str(tmp_path / "child")), CHILD)
        await archive_through(child)
        await child.close()

    asyncio.run(run())
    # interactions: per partition and date, fresh 3 files and replayed 3; items and users: per partition
    assert len(expected) == 10
    ids = [e for f, t in expected.items() if "interactions" in f for e in t["event_id"]]
    assert sorted(ids) == ["e1", "e1", "e2", "e2", "e3", "e3", "e4"]  # the duplicate is not archived
    assert contents(tmp_path / "local") == expected
    assert contents(tmp_path / "child" / "archive") == expected
    first = next(ParquetArchive(tmp_path / "child" / "archive").iter_events(INTERACTIONS))
    assert first["categories"] == ["jazz", "rock"] and first["value"] == 1.0


def test_a_dead_child_fails_its_pending_batch_retryably_and_the_retry_writes_it(tmp_path: Path) -> None:
    metrics = WorkerMetrics()
    rows = [(0, 7, RAW[USERS][0])]

    async def run() -> list[str]:
        link = ArchiveHandoff(load_settings(data_dir=str(tmp_path)), CHILD, metrics)
        await link.start()
        assert link._proc is not None
        pid = link._proc.pid
        os.kill(pid, signal.SIGSTOP)  # the batch stays pending until the child dies
        pending = asyncio.ensure_future(link(USERS, rows, None))
        await asyncio.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        out = []
        try:
            await asyncio.wait_for(pending, 60)
            out.append("done")
        except Exception as exc:  # noqa: BLE001 - what the follow-up's retry loop sees
            out.append(f"{type(exc).__name__}:{is_retryable(exc)}")
        await asyncio.wait_for(link(USERS, rows, None), 60)  # the retry: a new child
        out.append(f"retried, new child {link._proc is not None and link._proc.pid != pid}")
        await link.close()
        return out

    assert asyncio.run(run()) == ["ConnectionError:True", "retried, new child True"]
    assert metrics.child_exits.labels("archive")._value.get() == 1
    assert [r["user_id"] for r in ParquetArchive(tmp_path / "archive").iter_events(USERS)] == ["u1"]
