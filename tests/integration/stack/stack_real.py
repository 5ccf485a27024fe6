"""Helpers for the stack tests with the real worker, API and publisher: settings that start fast,
events through the real broker, and readers of what the stack made of them (Redis, the feed API)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from kafka import KafkaProducer

from core.events import Interaction, ItemUpsert, UserUpsert, encode
from core.settings import Settings, load_settings
from core.topics import Topics
from feature_store.online.keys import Keys
from services.stack import PROCESSES, Stack

SPECS = [p for p in PROCESSES if p.name in ("worker", "api", "publisher")]


def real_settings(data_dir: Path, bootstrap: str | None, prefix: str, **stack: Any) -> Settings:
    """Local Redis (the stack's own), the given broker (None: the stack's own), fast-starting worker."""
    return load_settings(
        data_dir=str(data_dir), kafka={"bootstrap_servers": bootstrap, "topic_prefix": prefix},
        redis={"key_prefix": f"sr:{prefix}"}, api={"port": 0},
        feast={"project": (prefix.rstrip("-").replace("-", "_") or "streamrec")},
        worker={"content_model": False, "feature_push": False, "session_timeout_s": 6.0,
                "commit_interval_s": 0.5},
        rerank={"explore_slots": 0, "diversity": "none", "freshness_boost": 0.0},
        stack=stack)


def make_stack(settings: Settings, fresh: bool = False) -> Stack:
    """Not started: ``with make_stack(s) as stack`` or ``make_stack(s).start()``."""
    return Stack(settings, processes=SPECS, ready_timeout_s=180, feast_apply=False, fresh=fresh)


def wait_for(pred: Callable[[], Any], timeout_s: float, what: str, poll_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def send(settings: Settings, *events: Interaction | ItemUpsert | UserUpsert) -> None:
    topics = Topics(settings.kafka.topic_prefix)
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    for ev in events:
        if isinstance(ev, ItemUpsert):
            producer.send(topics.items, encode(ev), key=ev.item_id.encode())
        elif isinstance(ev, UserUpsert):
            producer.send(topics.users, encode(ev), key=ev.user_id.encode())
        else:
            producer.send(topics.interactions, encode(ev), key=ev.user_id.encode())
    producer.flush(30)
    producer.close(5)


def catalogue(now: float, n: int = 6) -> list[ItemUpsert]:
    return [ItemUpsert(item_id=f"i{k}", title=f"item {k}", categories=["news"], created_at=now - 3600)
            for k in range(1, n + 1)]


def clicks(user: str, items: list[str], now: float, tag: str) -> list[Interaction]:
    return [Interaction(event_id=f"{tag}-{user}-{item}", user_id=user, item_id=item, type="click",
                        timestamp=now + k * 0.001, context={"device": "web"}) for k, item in enumerate(items)]


class Store:
    """Reads the worker's Redis state the way the tests need it."""

    def __init__(self, settings: Settings) -> None:
        self.keys = Keys(settings.redis.key_prefix)
        self.r = redis.Redis.from_url(str(settings.redis.url), decode_responses=True, socket_timeout=2)

    def history(self, user: str) -> list[str]:
        return [h.split("\t")[0] for h in self.r.lrange(self.keys.history(user), 0, -1)]

    def has_item(self, item: str) -> bool:
        return bool(self.r.exists(self.keys.item(item)))

    def has_user(self, user: str) -> bool:
        return bool(self.r.exists(self.keys.user(user)))

    def close(self) -> None:
        self.r.close()


def feed_ids(stack: Stack, user: str, n: int = 10, attempts: int = 10) -> list[str]:
    """The user's feed. A 503 (shed: the 40 ms admission queue of a busy test machine) is asked again
    after its Retry-After, as a client would; any other error, or 503 ``attempts`` times, fails."""
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(stack.url("api", f"/v1/feed/{user}?n={n}"), timeout=10) as resp:
                return [it["item_id"] for it in json.loads(resp.read())["items"]]
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or attempt == attempts - 1:
                raise
            time.sleep(float(exc.headers.get("Retry-After") or 1))
    raise AssertionError("unreachable")


def http_code(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


class ReadyPoller:
    """Samples ``GET /readyz`` of each url every ``every_s`` in a thread: (wall time the request was
    sent, name, code, wall time the answer came back)."""

    def __init__(self, urls: dict[str, str], every_s: float = 0.1) -> None:
        self.urls, self.every_s = urls, every_s
        self.samples: list[tuple[float, str, int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, url in self.urls.items():
                t = time.time()
                code = http_code(url)
                self.samples.append((t, name, code, time.time()))
            time.sleep(self.every_s)

    def last(self, name: str) -> int:
        return next((c for _, n, c, _ in reversed(self.samples) if n == name), 0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
