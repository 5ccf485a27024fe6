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
import os
import signal
import sys
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from core.events import FeedTrigger, encode
from core.settings import Settings
from core.topics import Topics
from feature_store import transforms as tf
from feature_store.online import resp
from feature_store.online.keys import Keys
from feature_store.online.reads import StateReads
from streams.app import producer
from streams.handoff import frame, read_frame
from streams.kafka_errors import describe, is_retryable
from streams.metrics import WorkerMetrics
from streams.processor import Send
from streams.sinks import FeatureRows, feast_rows

log = logging.getLogger("streams.handoff_child")
Frame = tuple[int, dict[str, bytes | None], list[str], dict[str, float]]


class Child:
    """Rows then triggers of one batch (``rows`` is None when ``worker.feature_push`` is off); the
    worker's handoff in this process (``run``) and, in process, the processor's in tests."""

    def __init__(self, topic: str, rows: FeatureRows | None, send: Send) -> None:
        self.topic, self.rows, self.send = topic, rows, send

    async def __call__(self, users: Mapping[str, bytes | None], items: Sequence[str],
                       triggers: Mapping[str, float]) -> None:
        if self.rows is not None and (users or items):
            await self.rows(_states(users), items)
        await send_triggers(self.send, self.topic, triggers)


async def serve(child: Child, msg: Frame, out: asyncio.StreamWriter) -> None:
    """One frame: the batch done, then its answer (``(seq, None)`` or ``(seq, (retryable, text))``)."""
    seq, users, items, triggers = msg
    error: tuple[bool, str] | None = None
    try:
        await child(users, items, triggers)
    except Exception as exc:  # noqa: BLE001 - reported to the worker, which retries or exits
        log.warning("rows/triggers of batch %d failed: %s", seq, describe(exc))
        error = (is_retryable(exc), describe(exc))
    out.write(frame((seq, error)))


async def send_triggers(send: Send, topic: str, triggers: Mapping[str, float]) -> None:
    """The batch's feed triggers (per user, the newest event time), each delivered."""
    futs = [await send(topic, u.encode(), encode(FeedTrigger(user_id=u, event_ts=ts)))
            for u, ts in triggers.items()]
    await asyncio.gather(*futs)


def _send(prod: AIOKafkaProducer) -> Send:
    async def send(topic: str, key: bytes | None, value: bytes) -> Awaitable[Any]:
        return await prod.send(topic, value, key=key)
    return send


def _states(users: Mapping[str, bytes | None]) -> dict[str, tf.UserState | None]:
    return {u: tf.loads_user(raw, u) if raw else None for u, raw in users.items()}


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
    child, tasks = Child(topic, rows, _send(prod)), set[asyncio.Task[None]]()
    try:
        while (msg := await read_frame(inp)) is not None:
            task = asyncio.ensure_future(serve(child, msg, out))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.wait(tasks, timeout=5.0) if tasks else None
        await out.drain()
    finally:
        if rows is not None:
            await rows.close()
        await prod.stop()
        await client.close()


async def _pipes() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    inp = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(inp), sys.stdin.buffer)
    raw_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, raw_out)
    return inp, asyncio.StreamWriter(transport, protocol, None, loop)


async def main_async() -> None:
    inp, out = await _pipes()
    await run(inp, out)


def main() -> None:
    # The worker's process group gets its SIGTERM too: stay until the worker closes the pipe, after
    # its drain has handed off the last batches (or it died).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(main_async())


if __name__ == "__main__":
    main()
