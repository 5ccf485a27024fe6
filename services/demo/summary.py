"""What one demo run measured, and the JSON summary built from it."""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psutil

from models.simulator import World
from services.demo.kafka_io import DeadLetterWatcher, FeedWatcher
from services.demo.scrape import WorkerCounts
from services.demo.traffic import TrafficDriver


def process_start_monotonic() -> float:
    """When this process started, on the monotonic clock: ``--duration`` counts the CLI's own
    start-up (imports) too, so the whole command stays within its time budget."""
    age = max(0.0, time.time() - psutil.Process().create_time())
    return time.monotonic() - age


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


@dataclass
class DemoRun:
    """Live counters of one run.

    ``processed`` counts this run's events whose effects are durable in Redis (the worker writes a
    dedupe mark per event in the same transaction as its effects), so it survives worker restarts;
    ``dead`` counts records on the interactions dead-letter topic. ``metrics`` is the worker's own
    Prometheus view (per process, reset by a restart).
    """

    started: float = field(default_factory=process_start_monotonic)
    startup_s: float = 0.0
    traffic_s: float = 0.0
    processed: int = 0
    dead: int = 0
    metrics: WorkerCounts = field(default_factory=WorkerCounts)
    timeline: list[dict[str, float]] = field(default_factory=list)
    api: dict[str, Any] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    _last: tuple[float, int, int, int, int] = (0.0, 0, 0, 0, 0)

    def sample(self, produced: int, feeds: int) -> None:
        t = time.monotonic() - self.started
        lt, lp, lproc, lf, ld = self._last
        dt = max(t - lt, 1e-6) if lt else 1.0
        self.timeline.append({
            "t": round(t, 2), "produced_per_s": (produced - lp) / dt,
            "processed_per_s": max(0, self.processed - lproc) / dt, "feeds_per_s": (feeds - lf) / dt,
            "dlq_per_s": max(0, self.dead - ld) / dt})
        self._last = (t, produced, self.processed, feeds, self.dead)


def probe_api(base_url: str, users: list[str], budget_s: float = 5.0) -> dict[str, Any]:
    """GET /v1/feed/{user} for a few users (the HTTP side of the same pipeline), within ``budget_s``."""
    ok, times = 0, []
    deadline = time.monotonic() + budget_s
    for user in users:
        t = time.monotonic()
        if deadline - t <= 0.1:
            break
        try:
            with urllib.request.urlopen(f"{base_url}/v1/feed/{user}", timeout=deadline - t) as resp:  # noqa: S310
                ok += int(resp.status == 200 and bool(json.loads(resp.read()).get("items")))
        except (OSError, ValueError):
            continue
        times.append((time.monotonic() - t) * 1000.0)
    return {"api_feed_requests": len(users), "api_feeds_ok": ok, "api_latency_ms_p50": pct(times, 50)}


def quality(world: World, feeds: FeedWatcher) -> dict[str, float | None]:
    """Mean hidden click probability of the items in users' latest feeds vs the whole catalogue."""
    served, catalogue = [], []
    for user, feed in list(feeds.latest.items())[:300]:
        items = [it.item_id for it in feed.items if world.has_item(it.item_id)]
        if items:
            served.append(float(world.click_probs(user, items).mean()))
            catalogue.append(float(world.click_probs(user, world.item_ids).mean()))
    if not served:
        return {"feed_true_ctr": None, "catalogue_true_ctr": None, "personalisation_lift": None}
    f, c = float(np.mean(served)), float(np.mean(catalogue))
    return {"feed_true_ctr": round(f, 4), "catalogue_true_ctr": round(c, 4),
            "personalisation_lift": round(f / c, 2) if c else None}


def summarise(run: DemoRun, driver: TrafficDriver, feeds: FeedWatcher, dlq: DeadLetterWatcher,
              world: World) -> dict[str, Any]:
    lat = list(feeds.latencies_ms)
    return {
        "events_produced": driver.produced, "events_processed": run.processed,
        "events_dead_lettered": run.dead, "invariant_holds": run.processed + run.dead == driver.produced,
        "events_malformed_injected": driver.malformed, "events_feedback": driver.feedback,
        "dlq_reasons": dict(dlq.reasons), "worker_metrics_applied": int(run.metrics.applied),
        "worker_metrics_dead_lettered": int(run.metrics.dead_lettered),
        "duplicates_detected": int(run.metrics.duplicate), "child_restarts": dict(run.restarts),
        "items_published": driver.items_published, "users_published": driver.users_published,
        "feeds_published": feeds.feeds, "users_with_feed": len(feeds.latest),
        "feed_latency_ms_p50": pct(lat, 50), "feed_latency_ms_p90": pct(lat, 90),
        "feed_latency_ms_p99": pct(lat, 99), "feeds_with_latency": len(lat),
        "startup_s": round(run.startup_s, 1), "traffic_s": round(run.traffic_s, 1),
        "events_per_s": round(driver.produced / run.traffic_s, 1) if run.traffic_s else 0.0,
        **quality(world, feeds), **run.api, "timeline": run.timeline,
    }
