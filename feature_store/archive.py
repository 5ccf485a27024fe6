"""EventArchive: the append-only, replayable parquet log of raw events (the offline store of record).

Layout: ``{root}/topic={topic}/date={YYYY-MM-DD}/{name}.parquet`` with the date taken from each
record's ``timestamp`` (UTC). Every ``append`` writes NEW files (one per date it spans) and never
rewrites an existing one, except that the name is a pure function of the batch: with Kafka
coordinates it is ``p{partition}-{first_offset}-{last_offset}``, otherwise a hash of the batch's event
ids. A replayed batch therefore lands on the same file (atomic rename), never a duplicate.

Columns: ``event_id, timestamp, partition, offset, payload`` (payload = the record as JSON).
``iter_events`` yields the records deduplicated by event id, in ``(timestamp, event_id)`` order.

Example:
    >>> arc = ParquetArchive(tmp_path)                                            # doctest: +SKIP
    >>> arc.append("interactions", [ev.model_dump()], partition=0, first_offset=7, last_offset=7)
    >>> list(arc.iter_events("interactions"))                                      # doctest: +SKIP
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from core.settings import Settings

SCHEMA = pa.schema([("event_id", pa.string()), ("timestamp", pa.float64()), ("partition", pa.int32()),
                    ("offset", pa.int64()), ("payload", pa.string())])
_ID_FIELDS = ("item_id", "user_id")


def event_id(topic: str, record: Mapping[str, Any]) -> str:
    """The record's event_id, or for upserts (no event_id) ``topic:entity@timestamp``."""
    eid = record.get("event_id")
    if eid:
        return str(eid)
    entity = next((str(record[k]) for k in _ID_FIELDS if record.get(k)), "")
    return f"{topic}:{entity}@{float(record.get('timestamp', 0.0))!r}"


@functools.lru_cache(maxsize=4096)
def _day(day_number: int) -> str:
    return datetime.fromtimestamp(day_number * 86400, tz=UTC).strftime("%Y-%m-%d")


def _date(ts: float) -> str:
    return _day(int(ts // 86400))


class ParquetArchive:
    """Implements core.protocols.EventArchive on a local directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def from_settings(cls, settings: Settings) -> ParquetArchive:
        return cls(settings.archive_dir)

    def append(
        self, topic: str, records: Sequence[Mapping[str, Any]], partition: int | None = None,
        first_offset: int | None = None, last_offset: int | None = None,
        payloads: Sequence[str] | None = None,
    ) -> list[Path]:
        """Write one batch; returns the files written. Offsets make the name idempotent.
        ``payloads``: the records already as JSON objects (then ``records`` need only the fields that
        name and place them: event_id or the entity id, timestamp, _offset)."""
        if not records:
            return []
        ids = [event_id(topic, r) for r in records]
        name = self._name(ids, partition, first_offset, last_offset)
        by_date: dict[str, list[int]] = {}
        for i, r in enumerate(records):
            by_date.setdefault(_date(float(r.get("timestamp", 0.0))), []).append(i)
        return [self._write(topic, day, name, [records[i] for i in idx], [ids[i] for i in idx],
                            partition, first_offset, None if payloads is None else [payloads[i] for i in idx])
                for day, idx in sorted(by_date.items())]

    @staticmethod
    def _name(ids: list[str], partition: int | None, first: int | None, last: int | None) -> str:
        if partition is not None and first is not None and last is not None:
            return f"p{partition}-{first:012d}-{last:012d}"
        return "h-" + hashlib.sha1("\n".join(ids).encode()).hexdigest()[:20]

    def _write(self, topic: str, day: str, name: str, records: list[Mapping[str, Any]], ids: list[str],
               partition: int | None, first_offset: int | None, payloads: list[str] | None = None) -> Path:
        target = self.root / f"topic={topic}" / f"date={day}" / f"{name}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        offsets = [r.get("_offset", first_offset) for r in records]
        if payloads is None:
            payloads = [json.dumps(dict(r), sort_keys=True, default=str) for r in records]
        table = pa.table({
            "event_id": ids, "timestamp": [float(r.get("timestamp", 0.0)) for r in records],
            "partition": [partition] * len(records), "offset": offsets, "payload": payloads,
        }, schema=SCHEMA)
        tmp = target.with_name(f".{name}.{uuid.uuid4().hex}.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, target)
        return target

    def files(self, topic: str, start_ts: float | None = None, end_ts: float | None = None) -> list[Path]:
        base = self.root / f"topic={topic}"
        lo = _date(start_ts) if start_ts is not None else ""
        hi = _date(end_ts) if end_ts is not None else "9999"
        days = [d for d in sorted(base.glob("date=*")) if lo <= d.name[5:] <= hi]
        return [f for d in days for f in sorted(d.glob("*.parquet"))]

    def iter_events(
        self, topic: str, start_ts: float | None = None, end_ts: float | None = None
    ) -> Iterator[dict[str, Any]]:
        """Records of one topic with ``start_ts <= timestamp <= end_ts``, deduplicated by event id,
        ordered by (timestamp, event_id)."""
        rows: dict[str, tuple[float, str]] = {}
        for f in self.files(topic, start_ts, end_ts):
            t = pq.read_table(f, columns=["event_id", "timestamp", "payload"]).to_pydict()
            for eid, ts, payload in zip(t["event_id"], t["timestamp"], t["payload"], strict=True):
                if (start_ts is None or ts >= start_ts) and (end_ts is None or ts <= end_ts):
                    rows.setdefault(eid, (ts, payload))
        for _eid, (_, payload) in sorted(rows.items(), key=lambda kv: (kv[1][0], kv[0])):
            yield json.loads(payload)
