"""Delivery of dead letters: keyed by the original key; a broker that refuses a letter for good gets
it logged and skipped (counted), a broker that is down makes the batch retry."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError, TopicAuthorizationFailedError
from faust.exceptions import ProducerSendError

from core.errors import BrokerUnavailable
from core.events import DeadLetter, EventError
from core.topics import Topics
from iokit.dead_letters import build
from streams.decode import RawRecord, Skew
from streams.metrics import WorkerMetrics
from streams.processor import BatchProcessor

ERR = EventError("unparseable", "not JSON")


class FakeProducer:
    """Records what was sent; ``fail`` maps an offset to the error its delivery (or queueing) raises."""

    def __init__(self, fail: dict[int, BaseException] | None = None, at_queue: bool = False) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.fail, self.at_queue = fail or {}, at_queue

    async def __call__(self, topic: str, key: bytes | None, value: bytes) -> Awaitable[Any]:
        err = self.fail.get(DeadLetter.model_validate_json(value).offset)
        if err is not None and self.at_queue:
            raise ProducerSendError(f"Error while sending: {err!r}") from err
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if err is not None:
            fut.set_exception(err)
        else:
            self.sent.append((topic, key, value))
            fut.set_result(None)
        return fut


def processor(send: FakeProducer) -> BatchProcessor:
    return BatchProcessor(Topics("p-"), None, send, WorkerMetrics(), Skew(60, 60))  # type: ignore[arg-type]


def letters(n: int) -> list[Any]:
    return [build(RawRecord("p-interactions", 0, k, b"{bad", 1.0, f"u{k}".encode()), ERR) for k in range(n)]


def test_letters_are_keyed_by_the_original_key() -> None:
    send = FakeProducer()
    sent = asyncio.run(processor(send)._dead_letter("interactions", letters(3)))
    assert len(sent) == 3
    assert [(t, k) for t, k, _ in send.sent] == [("p-interactions.dlq", f"u{k}".encode()) for k in range(3)]


@pytest.mark.parametrize("at_queue", [False, True])
def test_refused_letter_is_logged_counted_and_skipped(at_queue: bool,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    refusals: dict[int, BaseException] = {1: TopicAuthorizationFailedError(), 2: MessageSizeTooLargeError()}
    send = FakeProducer(refusals, at_queue=at_queue)
    proc = processor(send)
    with caplog.at_level(logging.ERROR, logger="streams.processor"):
        sent = asyncio.run(proc._dead_letter("interactions", letters(4)))
    assert [d.record.offset for d in sent] == [0, 3]
    assert "p-interactions[0]@1" in caplog.text and "p-interactions[0]@2" in caplog.text
    failed = proc.metrics.dlq_failed
    assert failed.labels("interactions", "TopicAuthorizationFailedError")._value.get() == 1
    assert failed.labels("interactions", "MessageSizeTooLargeError")._value.get() == 1


def test_broker_down_retries_the_batch_instead_of_skipping() -> None:
    send = FakeProducer({1: KafkaTimeoutError(), 2: TopicAuthorizationFailedError()})
    proc = processor(send)
    with pytest.raises(BrokerUnavailable):
        asyncio.run(proc._dead_letter("interactions", letters(3)))
    assert proc.metrics.dlq_failed.labels("interactions", "TopicAuthorizationFailedError")._value.get() == 0
