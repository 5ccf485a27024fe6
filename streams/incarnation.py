"""Topic incarnations: a broker that comes back empty must never make the worker skip events.

The worker's watermarks in Redis say "offsets up to N of this partition are applied". When the
memory-only local broker restarts, or a topic is deleted and created again, offsets restart at 0 and
new events would be taken for replays. Kafka names each topic incarnation with a topic id (Metadata
v10+; Tansu returns one, fresh at every creation). The worker keys its watermarks by topic id, and
the first time the broker reports another id for an input topic (or no topic), the worker exits
with :data:`EXIT_NEW_INCARNATION` without acking or committing anything: its supervisor restarts it,
and the new process, whose consumer group and offsets are gone with the old broker, reads the new
topics from the earliest offset under watermarks of the new id.

Why exit rather than carry on: after a broker restart aiokafka rejoins the group and resets its
positions to offset 0, but faust drops every record below the last offset it read from that
partition (``Consumer._drain_messages``), so the new events would never reach the agents.

The check is the broker's answer *after* the records were fetched: a batch is verified by a lookup
started after the batch arrived (shared between agents), a commit by a lookup just before it (in
faust's consumer thread, which has its own event loop), and a timer checks every
:data:`CHECK_INTERVAL_S` so that an idle worker notices too. aiokafka's metadata stops at v5 (no
topic ids), so the lookup uses kafka-python, in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from core.errors import EXIT_RESTART_REQUESTED, BrokerUnavailable

log = logging.getLogger(__name__)
EXIT_NEW_INCARNATION = EXIT_RESTART_REQUESTED  # EX_TEMPFAIL: restart me
CHECK_INTERVAL_S = 1.0
NULL_TOPIC_ID = "00000000-0000-0000-0000-000000000000"
UNKNOWN_TOPIC_OR_PARTITION = 3
Lookup = Callable[[Sequence[str]], Mapping[str, str | None]]


def incarnated(topic: str, topic_id: str | None) -> str:
    """The name watermarks are kept under: ``topic@id`` (plain ``topic`` without an id)."""
    return f"{topic}@{topic_id}" if topic_id else topic


class KafkaTopicIds:
    """Topic ids through kafka-python's metadata (v10+). None: the topic does not exist. Raises
    BrokerUnavailable when the broker does not answer."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = {"request_timeout_ms": 5000, **config}
        self._admin: Any = None

    def __call__(self, topics: Sequence[str]) -> dict[str, str | None]:
        try:
            if self._admin is None:
                from kafka.admin import KafkaAdminClient

                self._admin = KafkaAdminClient(**self.config)
            described = self._admin.describe_topics(list(topics))
        except Exception as exc:  # noqa: BLE001 - any client failure means "no answer"
            self.close()
            raise BrokerUnavailable(f"topic ids: {type(exc).__name__}: {exc}") from exc
        return {t["name"]: _topic_id(t) for t in described}

    def close(self) -> None:
        if self._admin is not None:
            admin, self._admin = self._admin, None
            with contextlib.suppress(Exception):  # closing a broken client
                admin.close()


def _topic_id(t: Mapping[str, Any]) -> str | None:
    if t["error_code"] == UNKNOWN_TOPIC_OR_PARTITION:
        return None
    if t["error_code"]:
        raise BrokerUnavailable(f"metadata of {t['name']}: error {t['error_code']}")
    return str(t["topic_id"]) if t.get("topic_id") is not None else NULL_TOPIC_ID


def exit_for_restart(why: str) -> None:
    log.error("%s; exiting (code %d) so that the supervisor restarts the worker on the new topics",
              why, EXIT_NEW_INCARNATION)
    logging.shutdown()
    os._exit(EXIT_NEW_INCARNATION)


class IncarnationGuard:
    """Knows the id of each input topic (the first one the broker reported) and trips when it
    changes. ``on_change`` exits the process; tests pass their own."""

    def __init__(self, topics: Sequence[str], lookup: Lookup,
                 on_change: Callable[[str], None] = exit_for_restart,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.topics, self.lookup, self.on_change, self.clock = list(topics), lookup, on_change, clock
        self.known: dict[str, str] = {}
        self._checked_at = float("-inf")  # when the last successful lookup started
        # A thread lock: faust's consumer (which commits) runs in its own thread and event loop.
        self._lock = threading.Lock()
        self._warned = False

    async def ids(self, since: float) -> dict[str, str]:
        """Topic ids as the broker reported them in a lookup started at or after ``since``
        (monotonic clock). Raises BrokerUnavailable when the broker does not answer."""
        if self._checked_at >= since:
            return dict(self.known)
        return await asyncio.to_thread(self._ids, since)

    def _ids(self, since: float) -> dict[str, str]:
        with self._lock:  # one lookup at a time; a lookup that started after ``since`` serves all
            if self._checked_at < since:
                started = self.clock()
                self._compare(self.lookup(self.topics))
                self._checked_at = started
            return dict(self.known)

    async def check(self) -> bool:
        """A lookup now; False (and nothing else) when the broker does not answer."""
        try:
            await self.ids(self.clock())
        except BrokerUnavailable as exc:
            log.debug("topic id check skipped: %s", exc)
            return False
        return True

    def _compare(self, ids: Mapping[str, str | None]) -> None:
        for topic in self.topics:
            new, old = ids.get(topic), self.known.get(topic)
            if new == NULL_TOPIC_ID:
                self._no_ids(topic)
            elif old is not None and new != old:
                self.on_change(f"topic {topic} is a new incarnation (id {old} -> {new or 'deleted'}): "
                               "the broker restarted empty or the topic was created again")
                return
            elif new is not None:
                self.known[topic] = new

    def _no_ids(self, topic: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("the broker reports no topic id for %s (Kafka < 2.8?): a topic created again "
                        "would have its first offsets taken for replays", topic)
