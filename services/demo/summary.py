"""What one demo run measured, and the JSON summary built from it."""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psutil

from core.events import Feed
from models.simulator import World
from services.demo.kafka_io import DeadLetterWatcher, FeedWatcher
from services.demo.scrape import WorkerCounts
from services.demo.traffic import TrafficDriver
from services.demo.truth import personalisation

LIFT_MEANING = (
    "personalisation_lift = mean true click probability of the items in the feeds / the same users' mean "
    "true click probability over the whole catalogue, by the simulator's hidden click model (a ratio of "
    "means). 1.0 means the feeds are worth no more than items drawn at random from the catalogue; 2.0 "
    "means a user is twice as likely to click an item of their feed as a random one.")


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
    ``dead`` counts records on the interactions dead-letter topic; ``skipped`` the records the worker
    could neither apply nor dead-letter (durable, in its Redis stats). ``metrics`` is the worker's own
    Prometheus view (per process, reset by a restart).
    """

    started: float = field(default_factory=process_start_monotonic)
    startup_s: float = 0.0
    traffic_s: float = 0.0
    processed: int = 0
    dead: int = 0
    skipped: int = 0
    metrics: WorkerCounts = field(default_factory=WorkerCounts)
    timeline: list[dict[str, float]] = field(default_factory=list)
    api: dict[str, Any] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    _last: tuple[float, int, int, int, int] = (0.0, 0, 0, 0, 0)

    @property
    def accounted(self) -> int:
        return self.processed + self.dead + self.skipped

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
    """``personalisation_lift`` (see LIFT_MEANING) of the users' latest feeds at the end of the run."""
    catalogue = world.item_ids
    rows = [personalisation(world, user, [it.item_id for it in feed.items], catalogue)
            for user, feed in list(feeds.latest.items())[:300]]
    got = [r for r in rows if r is not None]
    if not got:
        return {"feed_true_ctr": None, "catalogue_true_ctr": None, "personalisation_lift": None}
    f, c = float(np.mean([r[0] for r in got])), float(np.mean([r[1] for r in got]))
    return {"feed_true_ctr": round(f, 4), "catalogue_true_ctr": round(c, 4),
            "personalisation_lift": round(f / c, 2) if c else None}


class LearningCurve:
    """``personalisation_lift`` of the feeds published in each ``window_s`` window (by arrival on the
    topic, seconds since the demo started): each feed's items against its user's catalogue mean at
    the moment it arrived."""

    def __init__(self, world: World, started: float, window_s: float = 10.0) -> None:
        self.world, self.started, self.window_s = world, started, window_s
        self._sums: dict[int, list[float]] = {}

    def add(self, arrived: float, feed: Feed) -> None:
        items = [it.item_id for it in feed.items]
        got = personalisation(self.world, feed.user_id, items, self.world.item_ids)
        if got is None:
            return
        row = self._sums.setdefault(int((arrived - self.started) // self.window_s), [0.0, 0.0, 0])
        row[0], row[1], row[2] = row[0] + got[0], row[1] + got[1], row[2] + 1

    def rows(self) -> list[dict[str, float]]:
        return [{"t": round((k + 1) * self.window_s, 1), "feeds": n, "feed_true_ctr": round(f / n, 4),
                 "catalogue_true_ctr": round(c / n, 4), "personalisation_lift": round(f / c, 3)}
                for k, (f, c, n) in sorted(self._sums.items()) if n and c > 0]


def summarise(run: DemoRun, driver: TrafficDriver, feeds: FeedWatcher, dlq: DeadLetterWatcher,
              world: World, curve: LearningCurve | None = None) -> dict[str, Any]:
    lat = list(feeds.latencies_ms)
    return {
        "events_produced": driver.produced, "events_processed": run.processed,
        "events_dead_lettered": run.dead, "events_skipped": run.skipped,
        "invariant_holds": run.accounted == driver.produced,
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
        **quality(world, feeds), "personalisation_lift_meaning": LIFT_MEANING,
        "learning_curve": curve.rows() if curve is not None else [], **run.api, "timeline": run.timeline,
    }
