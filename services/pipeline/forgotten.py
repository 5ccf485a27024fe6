"""Every serving process hears of the eraser's deletions at once: a thread blocks on the tenant's
Redis stream ``Keys.forgotten`` (``XREAD BLOCK``: no polling, nothing on a request's path) and has the
pipeline forget each deleted item and user (``funnel.pipeline.Pipeline.forget``): the state's item and
list caches read them again, the last-feed cache and popularity snapshot of degraded answers drop
them, and every feed the process makes is cleaned against them.

The eraser adds an entry after it changed the online state (``services.privacy.eraser``), so a read
begun after the entry arrived sees the change. A process reads from ``Forgotten.keep_s`` before its
start (stream ids are times): one started just after a deletion hears of it too. While Redis is down
the thread retries; entries added meanwhile are read when it is back.

Example:
    >>> watcher = ForgetWatcher(settings, pipeline).start()     # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from prometheus_client import CollectorRegistry, Counter

from core.settings import Settings
from feature_store.online.keys import Keys
from feature_store.online.redis_state import redis_client
from funnel.pipeline import Pipeline

log = logging.getLogger(__name__)
BLOCK_S = 5.0  # one blocking read waits this long for an entry (then prunes and waits again)
RETRY_S = 1.0
HEARD = Counter("streamrec_deletions_heard", "Deletions this process heard of and dropped from its caches",
                ["kind"])


def register_forget_metrics(registry: CollectorRegistry) -> None:
    """Expose the process-wide counter on a process's own registry (API, publisher)."""
    registry.register(HEARD)


class ForgetWatcher:
    """Reads the deletions stream of ``settings``' tenant in a daemon thread, for ``pipeline``."""

    def __init__(self, settings: Settings, pipeline: Pipeline, client: redis.Redis | None = None) -> None:
        self.pipeline, self.key = pipeline, Keys(settings.redis.key_prefix).forgotten
        self.r = client if client is not None else redis_client(settings, socket_timeout_s=BLOCK_S + 5.0)
        self.last = f"{int((time.time() - pipeline.forgotten.keep_s) * 1000)}-0"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="forget-watcher", daemon=True)

    def start(self) -> ForgetWatcher:
        self._thread.start()
        return self

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                replies = self.r.xread({self.key: self.last}, count=1000, block=int(BLOCK_S * 1000))
            except (redis.RedisError, OSError) as exc:
                if self._stop.is_set():
                    return
                if not failing:
                    log.warning("deletions stream unreadable, retrying every %.0fs: %s", RETRY_S, exc)
                failing = True
                self._stop.wait(RETRY_S)
                continue
            failing = False
            self.apply(replies)
            self.pipeline.forgotten.prune()

    def apply(self, replies: Any) -> int:
        """Forget what ``XREAD``'s reply names; returns the number of entries."""
        items: list[str] = []
        users: list[str] = []
        for _, entries in replies or []:
            for entry_id, fields in entries:
                self.last = _text(entry_id)
                kind, ident = _text(fields.get(b"kind", b"")), _text(fields.get(b"id", b""))
                if ident and kind in ("item", "user"):
                    (items if kind == "item" else users).append(ident)
        if items or users:
            self.pipeline.forget(items, users)
            HEARD.labels("item").inc(len(items))
            HEARD.labels("user").inc(len(users))
            log.info("forgot %d deleted item(s) and %d user(s) in this process's caches", len(items),
                     len(users))
        return len(items) + len(users)

    def close(self) -> None:
        """Stop the thread: closing the connection ends a blocked read."""
        self._stop.set()
        self.r.close()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
