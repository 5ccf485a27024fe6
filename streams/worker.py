"""``python -m streams.worker``: the stream worker process.

Settings come from ``load_settings()`` (env ``STREAMREC_*`` + optional ``STREAMREC_CONFIG``); the
broker and Redis must be configured explicitly (``streamrec up`` passes them). HTTP ``/healthz``,
``/readyz`` and ``/metrics`` are served on ``worker.metrics_port`` (0 = a free port, logged).
SIGTERM drains the in-flight batches and commits their offsets.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Awaitable
from typing import Any

import faust
import redis
from redis.asyncio import Redis

from core.errors import StartupError
from core.settings import ConfigError, Settings, load_settings
from core.topics import Topics
from feature_store.online.batch import effect_params
from feature_store.online.keys import Keys
from feature_store.online.writer import OnlineWriter
from feature_store.transforms import TransformParams
from iokit import free_port, retry
from streams.app import WorkerState, create_app, register
from streams.content import ItemVectors
from streams.decode import Skew
from streams.metrics import WorkerMetrics
from streams.processor import BatchProcessor
from streams.sinks import ArchiveSink, FeastPushSink

log = logging.getLogger("streams.worker")

# Longer than a healthy drain (a batch + commit) and shorter than the supervisor's / Kubernetes'
# kill timeout. Offsets that were not committed are replayed, and effects are idempotent by event id.
SHUTDOWN_GRACE_S = 8.0


class BoundedShutdownWorker(faust.Worker):
    """A faust worker whose graceful stop is bounded.

    faust waits for in-flight events before it stops the consumer; a batch that keeps retrying an
    unreachable Redis would hold the process forever. After the first SIGTERM/SIGINT a watchdog
    exits with status 1 once ``SHUTDOWN_GRACE_S`` has passed.
    """

    def _on_sigterm(self) -> None:
        _arm_watchdog(SHUTDOWN_GRACE_S)
        super()._on_sigterm()

    def _on_sigint(self) -> None:
        _arm_watchdog(SHUTDOWN_GRACE_S)
        super()._on_sigint()


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
    retry("Redis at redis.url", lambda: redis.Redis.from_url(
        settings.redis.url or "", socket_connect_timeout=settings.redis.connect_timeout_s).ping(),
        settings.redis.connect_retries + 1, delay_s=0.2, max_delay_s=2.0)
    host, _, port = settings.kafka.bootstrap_servers.split(",")[0].strip().rpartition(":")
    retry(f"Kafka at {host}:{port}", lambda: socket.create_connection(
        (host, int(port)), timeout=settings.kafka.connect_timeout_s).close(),
        settings.kafka.connect_retries + 1, delay_s=0.2, max_delay_s=2.0)


def build(settings: Settings) -> tuple[faust.App, int]:
    port = settings.worker.metrics_port or free_port()
    app = create_app(settings, port)
    r = Redis.from_url(settings.redis.url or "", decode_responses=True,
                       socket_timeout=max(5.0, settings.redis.socket_timeout_s),
                       socket_connect_timeout=settings.redis.connect_timeout_s)
    state = WorkerState(r, WorkerMetrics())
    writer = OnlineWriter(r, Keys(settings.redis.key_prefix), effect_params(settings),
                          settings.worker.dedupe_ttl_s, TransformParams.from_settings(settings))

    async def send(topic: str, key: bytes | None, value: bytes) -> Awaitable[Any]:
        return await app.producer.send(topic, key, value, None, None, None)

    state.processor = BatchProcessor(
        Topics(settings.kafka.topic_prefix), writer, send, state.metrics,
        Skew(settings.worker.max_future_skew_s, settings.worker.max_past_skew_s),
        vectors=ItemVectors(settings.worker.content_model), archive=ArchiveSink(settings),
        push=FeastPushSink.try_create(settings))
    register(app, settings, state)
    return app, port


def main() -> None:
    try:
        settings = load_settings()
        logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
        check_endpoints(settings)
        app, port = build(settings)
    except (ConfigError, StartupError) as exc:
        print(f"streams.worker: {exc}", file=sys.stderr)
        sys.exit(2)
    log.info("worker metrics/health on port %d", port)
    print(f"STREAMREC_WORKER_PORT={port}", flush=True)
    worker = BoundedShutdownWorker(app, loglevel=settings.log_level.lower(), redirect_stdouts=False,
                          override_logging=False)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
