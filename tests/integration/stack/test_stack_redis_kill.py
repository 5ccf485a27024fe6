"""Issue 11, must show: SIGKILL the local Redis under a running stack. The supervisor restarts it on
the same port; the worker, the publisher and the API reconnect by themselves (same pids); events
sent after the recovery are applied; state written before the kill is still there (append-only
file); and each /readyz tells the truth throughout: 503 while Redis is down, 200 once it is back.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from services.stack import Stack
from tests.integration.stack.stack_real import (
    ReadyPoller,
    Store,
    catalogue,
    clicks,
    feed_ids,
    make_stack,
    real_settings,
    send,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]
BACKOFF_S = 3.0  # Redis stays down this long: a window in which /readyz must say 503


def _supervise(stack: Stack, stop: threading.Event) -> None:
    while not stop.is_set():  # what `streamrec up`'s run_forever does, off the main thread
        stack.revive()
        time.sleep(0.2)


def test_redis_sigkilled_under_the_stack_comes_back_and_everything_recovers(
        tmp_path: Path, kafka_bootstrap: str, topic_prefix: str, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="streamrec.stack")
    settings = real_settings(tmp_path, kafka_bootstrap, topic_prefix, restart_backoff_s=BACKOFF_S)
    stack, stop = make_stack(settings).start(), threading.Event()
    supervisor = threading.Thread(target=_supervise, args=(stack, stop), daemon=True)
    supervisor.start()
    try:
        _redis_kill_and_recovery(stack, caplog)
    finally:
        stop.set()
        supervisor.join(10)
        stack.stop()


def _redis_kill_and_recovery(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    s, store, now = stack.settings, Store(stack.settings), time.time()
    send(s, *catalogue(now), *clicks("alice", ["i1", "i2"], now, "before"))
    wait_for(lambda: store.history("alice") == ["i2", "i1"], 60, "alice's clicks applied")
    pids = {name: child.pid for name, child in stack.children.items()}
    redis = stack.supervisor.components["redis"]
    assert redis.child is not None
    port, old_pid = redis.port, redis.child.pid
    poller = ReadyPoller({name: stack.probe_url(name, "/readyz") for name in pids})
    time.sleep(1.0)
    assert {poller.last(n) for n in pids} == {200}, poller.samples[-6:]

    killed_at = time.time()
    os.kill(old_pid, signal.SIGKILL)
    wait_for(lambda: redis.state == "running" and redis.child and redis.child.pid != old_pid, 60,
             "Redis restarted by the supervisor")
    restarted_at = redis.history[-1]["restarted_at"]
    wait_for(lambda: {poller.last(n) for n in pids} == {200}, 60, "every /readyz 200 again")
    time.sleep(0.5)
    poller.stop()

    # /readyz told the truth: never 200 while Redis was down, 503 (not an error or a hang) instead.
    # A probe counts as "while down" only if it was sent and answered between the kill and the new
    # Redis's launch: one in flight across the launch may rightly see the new Redis.
    down = [(n, c, round(t0 - killed_at, 2), round(t1 - killed_at, 2))
            for t0, n, c, t1 in poller.samples if killed_at + 0.5 < t0 and t1 < restarted_at]
    assert down and all(c == 503 for _, c, _, _ in down), [d for d in down if d[1] != 503]
    assert {d[0] for d in down} == set(pids)
    assert restarted_at - killed_at >= BACKOFF_S - 0.1
    assert {poller.last(n) for n in pids} == {200}

    # same port, reaped (no zombie), no other process restarted
    assert redis.port == port and redis.child is not None and redis.child.pid != old_pid
    assert not psutil.pid_exists(old_pid)
    assert {name: child.pid for name, child in stack.children.items()} == pids
    assert stack.restarts == {"redis": 1}
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(m.startswith(f"redis (pid {old_pid}) exited with code -9") for m in errors), errors

    # state from before the kill survived; events after the recovery are applied; the feed is served
    assert store.history("alice") == ["i2", "i1"] and store.has_item("i6")
    send(s, *clicks("alice", ["i3"], time.time(), "after"))
    wait_for(lambda: store.history("alice") == ["i3", "i2", "i1"], 60, "a click sent after the recovery")
    assert not {"i1", "i2", "i3"} & set(feed_ids(stack, "alice"))
    store.close()
