"""The impression log: every served feed handed to the sink off the request path; a full queue, a
refused record and a failed delivery each count as dropped, never raise into the feed."""

from __future__ import annotations

from collections.abc import Callable

from core.events import Feed
from core.settings import Settings
from core.topics import Topics
from services.pipeline.impressions import decode_impression
from services.publisher.kafka_io import CProducer, ImpressionLog


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
