"""``python -m streams.worker``: the stream worker process.

Settings come from ``load_settings()`` (env ``STREAMREC_*`` + optional ``STREAMREC_CONFIG``); the
broker and Redis must be configured explicitly (``streamrec up`` passes them). HTTP ``/healthz``,
``/readyz`` and ``/metrics`` are served on ``worker.metrics_port`` (0 = a free port, logged).
SIGTERM drains the in-flight batches and commits their offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaProducer

from core.errors import StartupError
from core.settings import ConfigError, Settings, load_settings
from core.topics import INPUT_TOPICS, Topics
from feature_store.online import resp
from feature_store.online.batch import effect_params
from feature_store.online.keys import Keys
from feature_store.online.writer import OnlineWriter
from feature_store.transforms import TransformParams
from iokit import free_port, retry
from streams.app import ConsumerLoop, WorkerState, kafka_python_options, producer, timer, web_app
from streams.decode import Skew
from streams.handoff import ArchiveHandoff, Handoff
from streams.incarnation import IncarnationGuard, KafkaTopicIds
from streams.metrics import WorkerMetrics
from streams.processor import BatchProcessor
from streams.sinks import ItemVectors

log = logging.getLogger("streams.worker")

# Longer than a healthy drain (a batch + commit) and shorter than the supervisor's / Kubernetes'
# kill timeout. Offsets that were not committed are replayed, and effects are idempotent by event id.
SHUTDOWN_GRACE_S = 8.0


def _early(signum: int, frame: Any) -> None:
    """SIGTERM/SIGINT before the consumer started: nothing was read or applied, so just go."""
    logging.shutdown()
    os._exit(0)


def _arm_watchdog(grace_s: float) -> None:
    def expire() -> None:
        time.sleep(grace_s)
        log.error("shutdown did not finish within %.0fs (a dependency is down?); exiting, "
                  "uncommitted offsets will be replayed", grace_s)
        logging.shutdown()
        os._exit(1)

    threading.Thread(target=expire, name="shutdown-watchdog", daemon=True).start()


def check_endpoints(settings: Settings) -> None:
    """Fail fast, naming the key, when the broker or Redis is missing or unreachable."""
    if not settings.kafka.bootstrap_servers:
        raise ConfigError(["kafka.bootstrap_servers"], "the worker needs kafka.bootstrap_servers")
    if not settings.redis.url:
        raise ConfigError(["redis.url"], "the worker needs redis.url")
    url = settings.redis.url

    async def ping() -> None:
        r = settings.redis
        client = resp.connect(url, r.connect_timeout_s, max(1.0, r.socket_timeout_s))
        try:
            (pong,) = await client.execute([resp.command(None, "PING")])
            if isinstance(pong, resp.ReplyError):
                raise ConnectionError(str(pong))
        finally:
            await client.close()

    retry("Redis at redis.url", lambda: asyncio.run(ping()), settings.redis.connect_retries + 1,
          delay_s=0.2, max_delay_s=2.0)
    host, _, port = settings.kafka.bootstrap_servers.split(",")[0].strip().rpartition(":")
    retry(f"Kafka at {host}:{port}", lambda: socket.create_connection(
        (host, int(port)), timeout=settings.kafka.connect_timeout_s).close(),
        settings.kafka.connect_retries + 1, delay_s=0.2, max_delay_s=2.0)


def ensure_topics(settings: Settings) -> None:
    """The input, dead-letter and trigger topics exist with our partitioning (as the stack makes them)."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    k = settings.kafka
    topics = Topics(k.topic_prefix)
    names = [*(topics.name(b) for b in INPUT_TOPICS), *(topics.dlq(b) for b in INPUT_TOPICS),
             topics.feed_triggers]
    admin = KafkaAdminClient(**kafka_python_options(settings))
    try:
        missing = [n for n in names if n not in set(admin.list_topics())]
        for name in missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(name, k.partitions, k.replication_factor)])
    finally:
        admin.close()


@dataclass
class Parts:
    """What ``run`` builds and closes."""

    client: resp.Target
    state: WorkerState
    producer: AIOKafkaProducer
    vectors: ItemVectors
    archive: ArchiveHandoff
    handoff: Handoff
    guard: IncarnationGuard
    tasks: list[asyncio.Future[Any]] = field(default_factory=list)

    async def close(self, runner: web.AppRunner) -> None:
        for task in self.tasks:
            task.cancel()
        self.vectors.close()
        await asyncio.gather(self.handoff.close(), self.archive.close())
        await self.producer.stop()
        await runner.cleanup()
        await self.client.close()


async def build(settings: Settings) -> Parts:
    """Redis, the producer, the sinks and the batch processor, wired."""
    w, r = settings.worker, settings.redis
    client = resp.connect(r.url or "", r.connect_timeout_s, max(5.0, r.socket_timeout_s))
    state = WorkerState(client, WorkerMetrics())
    writer = OnlineWriter(client, Keys(r.key_prefix), effect_params(settings), w.dedupe_ttl_s,
                          TransformParams.from_settings(settings))
    prod = producer(settings)
    await prod.start()

    async def send(topic: str, key: bytes | None, value: bytes) -> Awaitable[Any]:
        return await prod.send(topic, value, key=key)

    vectors = ItemVectors(w.content_model)
    warm = asyncio.ensure_future(vectors.start())  # the model loads in its own process meanwhile
    handoff = Handoff(settings, metrics=state.metrics)  # Feast rows and feed triggers, in a child process
    archive = ArchiveHandoff(settings, metrics=state.metrics)  # the event archive, in another
    await asyncio.gather(handoff.start(), archive.start())
    parts = Parts(client, state, prod, vectors, archive, handoff, _guard(settings), [warm])
    state.processor = BatchProcessor(
        Topics(settings.kafka.topic_prefix), writer, send, state.metrics,
        Skew(w.max_future_skew_s, w.max_past_skew_s), vectors=vectors, archive=parts.archive,
        handoff=handoff)
    state.processor.fence = parts.guard.ids
    return parts


def _guard(settings: Settings) -> IncarnationGuard:
    topics = Topics(settings.kafka.topic_prefix)
    opts = kafka_python_options(settings)
    return IncarnationGuard([topics.name(b) for b in INPUT_TOPICS], KafkaTopicIds(
        {**opts, "client_id": f"{settings.kafka.client_id}-topic-ids"}))


async def run(settings: Settings, port: int) -> int:
    """The worker until SIGTERM/SIGINT (0) or a failure that exits the process."""
    parts = await build(settings)
    loop = ConsumerLoop(settings, parts.state, parts.guard)
    runner = web.AppRunner(web_app(parts.state), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.worker.host, port).start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, _stopper(parts.state))
    parts.tasks.append(asyncio.ensure_future(timer(parts.guard, parts.state)))
    tune_gc()
    try:
        await loop.run()
    finally:
        await parts.close(runner)
    return 0


def tune_gc() -> None:
    """The worker allocates ~100 objects per event; with CPython's default thresholds the cyclic
    collector then scans the whole heap (caches included) several times a second: about 30% of the
    CPU at 10k events/s. Collect young objects less often and keep start-up objects out of it."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 1000)


def _stopper(state: WorkerState) -> Any:
    def on_signal() -> None:
        if not state.stopping:
            _arm_watchdog(SHUTDOWN_GRACE_S)
        state.stopping = True
    return on_signal


def main() -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _early)
    try:
        settings = load_settings()
        logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
        check_endpoints(settings)
        ensure_topics(settings)
        port = settings.worker.metrics_port or free_port()
    except (ConfigError, StartupError) as exc:
        print(f"streams.worker: {exc}", file=sys.stderr)
        sys.exit(2)
    log.info("worker metrics/health on port %d", port)
    print(f"STREAMREC_WORKER_PORT={port}", flush=True)
    sys.exit(asyncio.run(run(settings, port)))


if __name__ == "__main__":
    main()
