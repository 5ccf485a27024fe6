"""Reading what the worker did: its Prometheus ``/metrics`` and its durable marks in Redis."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass

import redis
from prometheus_client.parser import text_string_to_metric_families

from feature_store.online.keys import Keys

WORKER_EVENTS = "streamrec_worker_events"


@dataclass(frozen=True)
class WorkerCounts:
    applied: float = 0.0
    dead_lettered: float = 0.0
    duplicate: float = 0.0


def parse_worker_counts(text: str, agent: str = "interactions") -> WorkerCounts:
    """Sum ``streamrec_worker_events_total{agent=..., outcome=...}`` by outcome."""
    by_outcome: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != WORKER_EVENTS:
            continue
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels.get("agent") == agent:
                outcome = sample.labels.get("outcome", "")
                by_outcome[outcome] = by_outcome.get(outcome, 0.0) + float(sample.value)
    return WorkerCounts(by_outcome.get("applied", 0.0), by_outcome.get("dead_lettered", 0.0),
                        by_outcome.get("duplicate", 0.0))


def worker_counts(metrics_url: str, agent: str = "interactions",
                  timeout_s: float = 2.0) -> WorkerCounts | None:
    """The worker's counts for ``agent``, or None when it does not answer."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=timeout_s) as resp:  # noqa: S310 - local URL
            return parse_worker_counts(resp.read().decode(), agent)
    except (OSError, ValueError):
        return None


class DurableCounter:
    """Counts events (by event-id prefix) whose effects the worker made durable in Redis: it sets
    a dedupe mark per event in the same transaction as the event's effects. :meth:`skipped` reads the
    worker's durable count of interaction records it could neither apply nor dead-letter."""

    def __init__(self, redis_url: str, key_prefix: str, event_id_prefix: str) -> None:
        self._client = redis.Redis.from_url(redis_url, socket_timeout=5.0, socket_connect_timeout=2.0)
        # The worker's marker of an event is "<prefix>dd:<event_id>", or "<prefix><shard tag>:dd:<event_id>"
        # once keys carry Redis Cluster hash tags (feature_store.online.keys): one glob matches both.
        self._pattern = f"{key_prefix}*dd:{event_id_prefix}*"
        self._stats = Keys(key_prefix).stats

    def skipped(self) -> int | None:
        """Records of the interactions topic whose dead letter the broker refused for good (the
        worker's stats hash, ``interactions:skipped``; its ``events_skipped`` sums every topic)."""
        try:
            raw = self._client.hget(self._stats, "interactions:skipped")
        except redis.RedisError:
            return None
        return int(raw) if raw is not None else 0

    def count(self) -> int | None:
        try:
            return sum(1 for _ in self._client.scan_iter(match=self._pattern, count=2000))
        except redis.RedisError:
            return None

    def close(self) -> None:
        self._client.close()
