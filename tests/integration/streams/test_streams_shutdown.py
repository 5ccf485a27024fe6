"""SIGTERM stops the worker in bounded time even when Redis vanished under an in-flight batch."""

import signal
import subprocess
import time
from pathlib import Path

import pytest
from streams_harness import (
    create_topics,
    interactions,
    items,
    make_settings,
    producer,
    ready,
    start_worker,
    stats,
    wait_for,
)

from core.events import encode
from core.topics import Topics
from services.localstack import start_redis
from streams.worker import SHUTDOWN_GRACE_S

pytestmark = pytest.mark.integration


def test_sigterm_with_redis_gone_exits_within_the_grace_period(tmp_path: Path, kafka_bootstrap: str):
    redis_url, redis_child = start_redis(tmp_path / "redis")
    s = make_settings(tmp_path, kafka_bootstrap, redis_url)
    create_topics(s)
    worker = start_worker(s)
    try:
        wait_for(lambda: ready(s), 60, "worker ready", worker)
        now = time.time()
        prod, topics = producer(s), Topics(s.kafka.topic_prefix)
        for item in items(5, now):
            prod.send(topics.items, key=item.item_id.encode(), value=encode(item))
        for ev in interactions(200, users=10, n_items=5, now=now):
            prod.send(topics.interactions, key=ev.user_id.encode(), value=encode(ev))
        prod.flush()
        wait_for(lambda: stats(s).get("events_processed", 0) > 0, 30, "first effects", worker)
        redis_child.stop()
        for ev in interactions(200, users=10, n_items=5, now=time.time(), seed=9):
            prod.send(topics.interactions, key=ev.user_id.encode(), value=encode(ev))
        prod.flush()
        time.sleep(2)  # the worker is now retrying a batch against the dead Redis
        started = time.monotonic()
        worker.proc.send_signal(signal.SIGTERM)
        try:
            code = worker.proc.wait(SHUTDOWN_GRACE_S + 10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker still running {SHUTDOWN_GRACE_S + 10:.0f}s after SIGTERM")
        assert time.monotonic() - started < SHUTDOWN_GRACE_S + 5
        assert code == 1
        assert "shutdown did not finish" in Path(str(worker.log_path)).read_text()
    finally:
        worker.stop()
        redis_child.stop()
