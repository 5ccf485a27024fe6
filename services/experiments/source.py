"""Where experiment reports and off-policy estimates read the platform's log from.

The log is four streams: the impression records (one per served feed, ``services.pipeline.
impressions``), the interactions (clicks attributed to a feed by ``feed_id`` and ``position``), and
the item and user upserts (categories for diversity and coverage; the state a replay rebuilds).
SOURCE is either ``kafka`` (the topics of the configured broker, read from the beginning, or from
``since`` by timestamp, to their current end, with no consumer group) or a path: a JSON-lines file,
or a directory of them, whose records are sorted into the streams by their fields (a dump of the
topics, concatenated, is a valid log).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.settings import Settings
from core.topics import Topics

KAFKA = "kafka"


@dataclass
class LogRecords:
    impressions: list[dict[str, Any]] = field(default_factory=list)
    interactions: list[dict[str, Any]] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    users: list[dict[str, Any]] = field(default_factory=list)

    def add(self, rec: dict[str, Any]) -> None:
        if "positions" in rec and "items" in rec and "feed_id" in rec:
            self.impressions.append(rec)
        elif "type" in rec and "item_id" in rec and "user_id" in rec:
            self.interactions.append(rec)
        elif "item_id" in rec and "created_at" in rec:
            self.items.append(rec)
        elif "user_id" in rec and "attributes" in rec:
            self.users.append(rec)

    def extend(self, recs: Iterable[dict[str, Any]]) -> LogRecords:
        for rec in recs:
            self.add(rec)
        return self


def read_log(source: str, settings: Settings, since: float | None = None) -> LogRecords:
    """The three streams from ``kafka`` or a JSON-lines file / directory (ValueError when missing)."""
    if source == KAFKA:
        return read_topics(settings, since)
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".jsonl", ".json"))
    elif path.is_file():
        files = [path]
    else:
        raise ValueError(f"log source {source!r} is neither 'kafka' nor an existing file or directory")
    out = LogRecords()
    for f in files:
        out.extend(_json_lines(f))
    return out


def _json_lines(path: Path) -> Iterator[dict[str, Any]]:
    with path.open() as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{n} is not JSON: {exc}") from None
                if isinstance(rec, dict):
                    yield rec


def write_log(records: LogRecords, path: Path) -> None:
    """One JSON-lines file holding the three streams (what :func:`read_log` reads back)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        for rec in (*records.items, *records.users, *records.impressions, *records.interactions):
            fh.write(json.dumps(rec, separators=(",", ":")) + "\n")


def read_topics(settings: Settings, since: float | None = None, idle_s: float = 1.0) -> LogRecords:
    topics = Topics(settings.kafka.topic_prefix)
    out = LogRecords()
    for topic in (topics.items, topics.users, topics.impressions, topics.interactions):
        upserts = topic in (topics.items, topics.users)
        out.extend(_read_topic(settings, topic, None if upserts else since, idle_s))
    return out


def _read_topic(settings: Settings, topic: str, since: float | None,
                idle_s: float) -> Iterator[dict[str, Any]]:
    """Every record from ``since`` (or the beginning) up to the end offsets seen at the start."""
    from services.demo.kafka_io import make_reader

    consumer = make_reader(settings, topic)
    try:
        parts = list(consumer.assignment())
        if since is not None:
            found = consumer.offsets_for_times({tp: int(since * 1000) for tp in parts})
            for tp, hit in found.items():
                if hit is not None:
                    consumer.seek(tp, hit.offset)
        end = consumer.end_offsets(parts)
        last = time.monotonic()
        while any(consumer.position(tp) < end[tp] for tp in parts) and time.monotonic() - last < idle_s:
            for batch in consumer.poll(timeout_ms=200, max_records=5000).values():
                last = time.monotonic()
                for msg in batch:
                    try:
                        rec = json.loads(msg.value)
                    except (TypeError, ValueError):
                        continue
                    if isinstance(rec, dict):
                        yield rec
    finally:
        consumer.close()
