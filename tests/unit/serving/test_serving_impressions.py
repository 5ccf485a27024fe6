"""The impression log: every served feed handed to the sink off the request path; a full queue, a
refused record and a failed delivery each count as dropped, never raise into the feed. The C
producer's ``send`` (the API's ingest writes) waits for every acknowledgement."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from core.events import Feed
from core.settings import Settings
from core.topics import Topics
from services.pipeline.impressions import decode_impression
from services.publisher.kafka_io import CProducer, ImpressionLog, NotDelivered


class _Sink:
    def __init__(self, accept: bool = True, fail_delivery: bool = False) -> None:
        self.accept, self.fail_delivery = accept, fail_delivery
        self.records: list[tuple[str, bytes, bytes]] = []
        self.flushes = 0

    def produce(self, topic: str, key: bytes, value: bytes, on_failed: Callable[[str], None]) -> bool:
        if not self.accept:
            return False
        self.records.append((topic, key, value))
        if self.fail_delivery:
            on_failed("broker said no")
        return True

    def flush(self, timeout_s: float) -> int:
        self.flushes += 1
        return 0


def _feed(user: str) -> Feed:
    return Feed(feed_id=f"f-{user}", user_id=user, version=1, generated_at=1.7e9, items=[])


def test_each_logged_feed_goes_to_the_impressions_topic_keyed_by_user() -> None:
    sink, topics = _Sink(), Topics("p.")
    log = ImpressionLog(sink, topics, "api")
    for user in ("u1", "u2"):
        log.log(_feed(user), 3.25)
    log.close()
    assert [(t, k) for t, k, _ in sink.records] == [(topics.impressions, b"u1"), (topics.impressions, b"u2")]
    first = decode_impression(sink.records[0][2])
    assert first.feed_id == "f-u1" and first.origin == "api" and first.latency_ms == 3.25
    assert log.dropped == 0 and sink.flushes == 1  # close delivers what the producer holds


def test_refused_and_undelivered_impressions_are_counted_as_dropped() -> None:
    refused = ImpressionLog(_Sink(accept=False), Topics(""), "api")
    failed = ImpressionLog(_Sink(fail_delivery=True), Topics(""), "api")
    for log in (refused, failed):
        log.log(_feed("u1"))
        log.log(_feed("u2"))
        log.flush()
        assert log.dropped == 2


def test_without_a_broker_the_c_producer_refuses_every_record() -> None:
    log = ImpressionLog(CProducer(Settings(), "test"), Topics(""), "api")
    log.log(_feed("u1"))
    log.flush()
    assert log.dropped == 1
    log.close()


class _Client:
    """confluent-kafka's Producer as CProducer uses it; ``error``: every delivery report's error."""

    def __init__(self, error: str | None = None, report: bool = True) -> None:
        self.error, self.report = error, report
        self.records: list[tuple[str, bytes, bytes | None]] = []

    def produce(self, topic: str, key: bytes, value: bytes | None,
                on_delivery: Callable[[Any, Any], None]) -> None:
        self.records.append((topic, key, value))
        if self.report:
            on_delivery(self.error, None)

    def flush(self, timeout: float) -> int:
        return 0


def _connected(client: _Client) -> CProducer:
    producer = CProducer(Settings(), "test")
    producer._client = client
    producer._connected.set()
    return producer


def test_send_waits_for_every_acknowledgement_and_names_a_failure() -> None:
    with pytest.raises(NotDelivered, match="not connected"):
        CProducer(Settings(), "test").send("t", [b"k"], [b"v"], 1.0)
    ok = _Client()
    _connected(ok).send("t", [b"k1", b"k2"], [b"v1", b"v2"], 1.0)
    assert ok.records == [("t", b"k1", b"v1"), ("t", b"k2", b"v2")]
    with pytest.raises(NotDelivered, match="Broker: Not enough in-sync replicas"):
        _connected(_Client(error="Broker: Not enough in-sync replicas")).send("t", [b"k"], [b"v"], 1.0)
    with pytest.raises(NotDelivered, match="no acknowledgement within 0.05 s"):
        _connected(_Client(report=False)).send("t", [b"k"], [b"v"], 0.05)
