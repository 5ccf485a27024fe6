"""The dead-letter topics as the console shows them: how many letters each holds (its offsets), and
the newest ones with their reason, detail and coordinates.

One consumer without a group (nothing joins or commits), kept open between pages; each read seeks every
partition to ``end - n`` and reads to the end, so its cost does not grow with the topic.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from core.events import DeadLetter
from core.settings import Settings
from core.topics import INPUT_TOPICS, Topics

log = logging.getLogger(__name__)
CACHE_S = 2.0


@dataclass
class Letter:
    topic: str
    partition: int
    offset: int
    letter: DeadLetter | None  # None: the record is not a DeadLetter
    raw: str = ""

    @property
    def failed_at(self) -> float:
        return self.letter.failed_at if self.letter is not None else 0.0


@dataclass
class DlqView:
    totals: dict[str, int] = field(default_factory=dict)  # DLQ topic -> letters it holds
    newest: list[Letter] = field(default_factory=list)
    reasons: dict[tuple[str, str], int] = field(default_factory=dict)  # (topic, reason) among newest
    error: str = ""
    read_ms: float = 0.0


class DeadLetters:
    def __init__(self, settings: Settings, n: int) -> None:
        self.settings, self.n = settings, n
        topics = Topics(settings.kafka.topic_prefix)
        self.topics = [topics.dlq(b) for b in INPUT_TOPICS]
        self._consumer: Any = None
        self._lock = threading.Lock()
        self._cached: tuple[float, DlqView] | None = None

    def view(self) -> DlqView:
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < CACHE_S:
                return self._cached[1]
            t0 = time.perf_counter()
            try:
                out = self._read()
            except Exception as exc:  # noqa: BLE001 - the page shows why, and the rest of it
                log.warning("console: dead-letter topics unreadable: %s", exc)
                self._close_consumer()
                out = DlqView(error=f"{type(exc).__name__}: {exc}")
            out.read_ms = (time.perf_counter() - t0) * 1e3
            self._cached = (time.monotonic(), out)
            return out

    def _open(self) -> Any:
        if self._consumer is None:
            from kafka import KafkaConsumer

            from services.stack_setup import kafka_config

            timeout_ms = int(self.settings.console.timeout_s * 1e3)
            cfg = {**kafka_config(self.settings), "bootstrap_timeout_ms": timeout_ms}
            self._consumer = KafkaConsumer(**cfg, enable_auto_commit=False, group_id=None)
        return self._consumer

    def _read(self) -> DlqView:
        from kafka import TopicPartition

        if not self.settings.kafka.bootstrap_servers:
            return DlqView(error="kafka.bootstrap_servers is not set: no dead-letter topics to read")
        consumer = self._open()
        tps = [TopicPartition(t, p) for t in self.topics
               for p in sorted(consumer.partitions_for_topic(t) or ())]
        if not tps:
            return DlqView(error="no dead-letter topics on the broker yet")
        consumer.assign(tps)
        begin, end = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
        out = DlqView(totals={t: sum(end[tp] - begin[tp] for tp in tps if tp.topic == t)
                              for t in self.topics})
        for tp in tps:
            consumer.seek(tp, max(begin[tp], end[tp] - self.n))
        letters = self._drain(consumer, {tp: end[tp] for tp in tps if end[tp] > begin[tp]})
        letters.sort(key=lambda x: (x.failed_at, x.offset), reverse=True)
        out.newest = letters[: self.n]
        out.reasons = dict(Counter((x.topic, x.letter.reason if x.letter else "not a dead letter")
                                   for x in out.newest))
        return out

    def _drain(self, consumer: Any, ends: dict[Any, int]) -> list[Letter]:
        deadline = time.monotonic() + self.settings.console.timeout_s
        out: list[Letter] = []
        while any(consumer.position(tp) < end for tp, end in ends.items()) and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=100, max_records=2000).items():
                out.extend(_letter(tp.topic, tp.partition, r.offset, r.value) for r in records
                           if r.offset < ends.get(tp, 0))
        return out

    def _close_consumer(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):  # closing a broken client
                consumer.close(autocommit=False)

    def close(self) -> None:
        with self._lock:
            self._close_consumer()


def _letter(topic: str, partition: int, offset: int, value: bytes | None) -> Letter:
    try:
        return Letter(topic, partition, offset, DeadLetter.model_validate_json(value or b""))
    except ValueError:
        return Letter(topic, partition, offset, None, (value or b"")[:500].decode("utf-8", "replace"))
