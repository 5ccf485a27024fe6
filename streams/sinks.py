"""Adapters from the worker to FEATURES' archive and Feast writer (sync code run off the loop)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from core.settings import Settings
from streams.decode import RawRecord

log = logging.getLogger(__name__)


class ArchiveSink:
    """Appends fresh records per partition; file names come from offsets, so retries overwrite."""

    def __init__(self, settings: Settings) -> None:
        from feature_store.archive import ParquetArchive

        self._archive = ParquetArchive.from_settings(settings)

    async def __call__(self, base: str, rows: Sequence[tuple[RawRecord, dict[str, Any]]]) -> None:
        await asyncio.to_thread(self._append, base, rows)

    def _append(self, base: str, rows: Sequence[tuple[RawRecord, dict[str, Any]]]) -> None:
        by_part: dict[int, list[tuple[RawRecord, dict[str, Any]]]] = {}
        for rec, row in rows:
            by_part.setdefault(rec.partition, []).append((rec, {**row, "_offset": rec.offset}))
        for part, items in by_part.items():
            offs = [rec.offset for rec, _ in items]
            self._archive.append(base, [row for _, row in items], partition=part,
                                 first_offset=min(offs), last_offset=max(offs))


class FeastPushSink:
    """Pushes absolute feature rows to Feast (ONLINE) and flushes before the batch is acked."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer
        self._lock = threading.Lock()  # agents push from worker threads; FeatureWriter is not thread-safe

    @classmethod
    def try_create(cls, settings: Settings) -> FeastPushSink | None:
        if not settings.worker.feature_push:
            return None
        try:
            from core.features import USER_REALTIME
            from feature_store.writer import FeatureWriter

            writer = FeatureWriter.from_settings(settings)
            writer._store.get_feature_view(USER_REALTIME.view)  # noqa: SLF001 - probe the registry
        except Exception as exc:  # noqa: BLE001 - the worker runs without pushes, loudly
            log.warning("Feast pushes disabled: feature repo not usable (%s); run `streamrec features "
                        "apply`", exc)
            return None
        return cls(writer)

    async def __call__(self, rows: Mapping[str, list[dict[str, Any]]]) -> None:
        await asyncio.to_thread(self._push, rows)

    def _push(self, rows: Mapping[str, list[dict[str, Any]]]) -> None:
        with self._lock:
            for view, view_rows in rows.items():
                if view_rows:
                    self._writer.push(view, view_rows)
            self._writer.flush()
