"""``python -m streams.handoff_child``: the worker's Feast rows and feed triggers (:mod:`streams.handoff`).

Reads the worker's settings, then one frame per applied batch from stdin; for each, writes the rows
(``sinks.FeatureRows``: coalesced over ``feast.push_interval_ms``, newest state per user, items'
states read at write time), then produces the batch's feed triggers and waits for their delivery,
then answers ``(seq, None)``, or ``(seq, (retryable, text))`` when either failed. Batches are served
concurrently, so the rows of those that arrive within one interval are one write. Exits when stdin
closes (SIGTERM and SIGINT are ignored: the worker's process group gets them when only the worker
should stop, and it drains its last batches through this process). Its frames go out on a private
copy of stdout; fd 1 then points at stderr (the worker's log), so nothing else printed corrupts them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from core.events import FeedTrigger, encode
from core.settings import Settings
from core.topics import Topics
from feature_store.online import resp
from feature_store.online.keys import Keys
from feature_store.online.reads import StateReads
from streams.app import producer
from streams.handoff import answer, child_main, read_frame
from streams.metrics import WorkerMetrics
from streams.processor import Send
from streams.sinks import FeatureRows, feast_rows

log = logging.getLogger("streams.handoff_child")


class Child:
    """Rows then triggers of one batch (``rows`` is None when ``worker.feature_push`` is off); the
    worker's handoff in this process (``run``) and, in process, the processor's in tests."""

    def __init__(self, topic: str, rows: FeatureRows | None, send: Send) -> None:
        self.topic, self.rows, self.send = topic, rows, send

    async def __call__(self, users: Mapping[str, bytes | None], items: Sequence[str],
                       triggers: Mapping[str, float]) -> None:
        if self.rows is not None and (users or items):
            await self.rows(users, items)
        await send_triggers(self.send, self.topic, triggers)


async def send_triggers(send: Send, topic: str, triggers: Mapping[str, float]) -> None:
    """The batch's feed triggers (per user, the newest event time), each delivered."""
    futs = [await send(topic, u.encode(), encode(FeedTrigger(user_id=u, event_ts=ts)))
            for u, ts in triggers.items()]
    await asyncio.gather(*futs)


def _send(prod: AIOKafkaProducer) -> Send:
    async def send(topic: str, key: bytes | None, value: bytes) -> Awaitable[Any]:
        return await prod.send(topic, value, key=key)
    return send


async def run(inp: asyncio.StreamReader, out: asyncio.StreamWriter) -> None:
    settings: Settings | None = await read_frame(inp)
    if settings is None:
        return
    logging.getLogger().setLevel(settings.log_level)
    r = settings.redis
    client = resp.connect(r.url or "", r.connect_timeout_s, max(5.0, r.socket_timeout_s))
    reads = StateReads(client, Keys(r.key_prefix))
    rows = feast_rows(settings, client, reads.feature_states, WorkerMetrics())
    prod = producer(settings)
    await prod.start()
    topic = Topics(settings.kafka.topic_prefix).feed_triggers
    try:
        await answer(inp, out, Child(topic, rows, _send(prod)))
    finally:
        if rows is not None:
            await rows.close()
        await prod.stop()
        await client.close()


def main() -> None:
    child_main(run)


if __name__ == "__main__":
    main()
