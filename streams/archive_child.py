"""``python -m streams.archive_child``: the worker's event archive, in its own process.

The archive thread re-encoded every record from its pydantic object in the worker (~18 % of the
worker's CPU, profiled at 1a14562). Now the worker sends each applied batch's records as consumed
(:class:`streams.handoff.ArchiveHandoff`: ``(seq, base, rows, categories)``, a row being
``(partition, offset, bytes)``) and this process decodes them with the schema the worker validated them
with (:func:`streams.decode.decode`: the same model, hence the same JSON), then writes the parquet
files as the worker did (:class:`ArchiveWriter`), and answers once the file holding the batch is
written. The worker commits a batch's offsets only after that answer. Exits when stdin closes (the
worker stopped or died), SIGTERM and SIGINT ignored (:func:`streams.handoff.child_main`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from core.settings import Settings
from feature_store.archive import ParquetArchive
from streams.decode import decode
from streams.handoff import answer, child_main, read_frame
from streams.processor import ArchiveRow
from streams.sinks import Coalescer

Cats = Mapping[str, list[str]] | None
Pending = dict[str, list[tuple[ArchiveRow, Cats]]]


class ArchiveWriter:
    """Appends records per topic and partition, coalesced over ``interval_s`` (fewer, larger parquet
    files): a call returns once the write that holds its records is done. A file is named by the
    offsets it holds, so a retried write replaces it; a replay after a crash may group records
    differently, and the archive's reader keeps one record per event id. The child's work, and in
    process the processor's ``archive`` in tests."""

    def __init__(self, archive: ParquetArchive, interval_s: float = 0.5) -> None:
        self.archive = archive
        self._out = Coalescer(self._flush, dict, interval_s)

    async def __call__(self, base: str, rows: Sequence[ArchiveRow], cats: Cats) -> None:
        def add(pending: Pending) -> None:
            pending.setdefault(base, []).extend((row, cats) for row in rows)

        await self._out.submit(add)

    async def _flush(self, pending: Pending) -> None:
        for base, rows in pending.items():
            await asyncio.to_thread(self._append, base, rows)

    def _append(self, base: str, rows: Sequence[tuple[ArchiveRow, Cats]]) -> None:
        by_part: dict[int, list[tuple[int, Any, Cats]]] = {}
        for (part, offset, raw), cats in rows:
            by_part.setdefault(part, []).append((offset, decode(base, raw), cats))
        for part, group in by_part.items():
            offs = [off for off, _, _ in group]
            self.archive.append(base, [_place(off, ev) for off, ev, _ in group], partition=part,
                                first_offset=min(offs), last_offset=max(offs),
                                payloads=[_payload(off, ev, cats) for off, ev, cats in group])

    async def close(self) -> None:
        await self._out.close()


def _place(offset: int, ev: Any) -> dict[str, Any]:
    """What names and dates an archived record: its id (or entity id), timestamp and offset."""
    out = {"timestamp": ev.timestamp, "_offset": offset}
    for name in ("event_id", "item_id", "user_id"):
        value = getattr(ev, name, None)
        if value is not None:
            out[name] = value
            break
    return out


def _payload(offset: int, ev: Any, cats: Cats) -> str:
    """The record as JSON (``model_dump_json``, what ``model_dump`` + ``json.dumps`` gave, read back
    the same), with the categories planning saw and the offset."""
    extra = f',"_offset":{offset}}}'
    if cats is not None:
        extra = f',"categories":{json.dumps(cats.get(ev.item_id, []))}' + extra
    return ev.model_dump_json()[:-1] + extra  # type: ignore[no-any-return]


async def run(inp: asyncio.StreamReader, out: asyncio.StreamWriter) -> None:
    settings: Settings | None = await read_frame(inp)
    if settings is None:
        return
    logging.getLogger().setLevel(settings.log_level)
    writer = ArchiveWriter(ParquetArchive.from_settings(settings))
    try:
        await answer(inp, out, writer)
    finally:
        await writer.close()


def main() -> None:
    child_main(run)


if __name__ == "__main__":
    main()
