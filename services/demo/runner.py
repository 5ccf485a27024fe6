"""``streamrec demo``: bring the stack up, drive simulator traffic, watch feeds, stop, summarise.

``duration_s`` bounds the whole run up to the end of traffic (start-up included; at least
``min_traffic_s`` of traffic). Then the demo waits, bounded, for the worker to account for every
event produced (``events_processed + events_dead_lettered == events_produced``) and stops the stack.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rich.console import Console
from rich.live import Live

from core.settings import Settings
from core.topics import INTERACTIONS, Topics
from models.simulator import World, WorldConfig
from services.demo.kafka_io import DeadLetterWatcher, FeedWatcher, make_producer
from services.demo.progress import Snapshot, render
from services.demo.scrape import WorkerCounts, worker_counts
from services.demo.traffic import TrafficDriver
from services.stack import Stack, terminate_as_interrupt


@dataclass
class DemoOptions:
    duration_s: float = 120.0
    rate: float = 150.0
    malformed_fraction: float = 0.01
    feedback_fraction: float = 0.3
    new_items_per_min: float = 30.0
    n_users: int = 300
    n_items: int = 1000
    seed: int = 0
    min_traffic_s: float = 10.0
    catch_up_s: float = 20.0
    settle_s: float = 4.0
    catalog_wait_s: float = 20.0
    ready_timeout_s: float = 90.0


@dataclass
class DemoRun:
    """Live counters of one run; ``summary()`` turns them into the JSON summary."""

    opts: DemoOptions
    started: float = field(default_factory=time.monotonic)
    startup_s: float = 0.0
    traffic_s: float = 0.0
    counts: WorkerCounts = field(default_factory=WorkerCounts)
    timeline: list[dict[str, float]] = field(default_factory=list)
    api: dict[str, Any] = field(default_factory=dict)
    _last: tuple[float, int, float, int, float] = (0.0, 0, 0.0, 0, 0.0)

    def sample(self, driver: TrafficDriver, feeds: FeedWatcher) -> None:
        t = time.monotonic() - self.started
        lt, lp, lproc, lf, ld = self._last
        dt = max(t - lt, 1e-6)
        self.timeline.append({
            "t": round(t, 2), "produced_per_s": (driver.produced - lp) / dt,
            "processed_per_s": max(0.0, self.counts.applied - lproc) / dt,
            "feeds_per_s": (feeds.feeds - lf) / dt,
            "dlq_per_s": max(0.0, self.counts.dead_lettered - ld) / dt})
        self._last = (t, driver.produced, self.counts.applied, feeds.feeds, self.counts.dead_lettered)


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def _quality(world: World, feeds: FeedWatcher) -> dict[str, float | None]:
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


def probe_api(base_url: str, users: list[str], timeout_s: float = 3.0) -> dict[str, Any]:
    """GET /v1/feed/{user} for a few users: the HTTP side of the same pipeline."""
    ok, times = 0, []
    for user in users:
        t = time.monotonic()
        try:
            with urllib.request.urlopen(f"{base_url}/v1/feed/{user}", timeout=timeout_s) as resp:  # noqa: S310
                ok += int(resp.status == 200 and bool(json.loads(resp.read()).get("items")))
        except (OSError, ValueError):
            continue
        times.append((time.monotonic() - t) * 1000.0)
    return {"api_feed_requests": len(users), "api_feeds_ok": ok, "api_latency_ms_p50": _pct(times, 50)}


def summarise(run: DemoRun, driver: TrafficDriver, feeds: FeedWatcher, dlq: DeadLetterWatcher,
              world: World) -> dict[str, Any]:
    lat = list(feeds.latencies_ms)
    processed, dead = int(run.counts.applied), int(run.counts.dead_lettered)
    return {
        "events_produced": driver.produced, "events_processed": processed, "events_dead_lettered": dead,
        "events_malformed_injected": driver.malformed, "events_feedback": driver.feedback,
        "dead_letters_on_topic": dlq.count, "dlq_reasons": dict(dlq.reasons),
        "duplicates_detected": int(run.counts.duplicate),
        "invariant_holds": processed + dead == driver.produced,
        "items_published": driver.items_published, "users_published": driver.users_published,
        "feeds_published": feeds.feeds, "users_with_feed": len(feeds.latest),
        "feed_latency_ms_p50": _pct(lat, 50), "feed_latency_ms_p90": _pct(lat, 90),
        "feed_latency_ms_p99": _pct(lat, 99), "feeds_with_latency": len(lat),
        "startup_s": round(run.startup_s, 1), "traffic_s": round(run.traffic_s, 1),
        "events_per_s": round(driver.produced / run.traffic_s, 1) if run.traffic_s else 0.0,
        **_quality(world, feeds), **run.api, "timeline": run.timeline,
    }


def _snapshot(run: DemoRun, driver: TrafficDriver, feeds: FeedWatcher, phase: str,
              remaining: float) -> Snapshot:
    recent = run.timeline[-3:]
    rate = float(np.mean([p["produced_per_s"] for p in recent])) if recent else 0.0
    return Snapshot(time.monotonic() - run.started, remaining, driver.produced, rate,
                    int(run.counts.applied), int(run.counts.dead_lettered), feeds.feeds,
                    len(feeds.latest), _pct(list(feeds.latencies_ms), 50), phase)


class Demo:
    def __init__(self, settings: Settings, opts: DemoOptions, console: Console) -> None:
        self.opts, self.console = opts, console
        self.run = DemoRun(opts)
        self.stack_dir = settings.data_dir / "demo" / "stack"
        self.settings = settings.model_copy(update={"data_dir": self.stack_dir})
        cfg = WorldConfig(n_users=opts.n_users, n_items=opts.n_items, seed=opts.seed,
                          id_prefix=f"d{int(time.time())}-")
        self.world = World(cfg)
        self.latencies_ms: list[float] = []

    def execute(self) -> dict[str, Any]:
        with terminate_as_interrupt():
            return self._execute()

    def _execute(self) -> dict[str, Any]:
        shutil.rmtree(self.stack_dir, ignore_errors=True)
        stack = Stack(self.settings, ready_timeout_s=self.opts.ready_timeout_s)
        with self.console.status("starting the stack (broker, redis, worker, api, publisher, scheduler)"):
            stack.start()
        try:
            self.run.startup_s = time.monotonic() - self.run.started
            self.console.print(f"stack up in {self.run.startup_s:.1f}s; logs in {stack.log_dir}")
            return self._drive(stack)
        finally:
            with self.console.status("stopping the stack"):
                stack.stop()

    def _drive(self, stack: Stack) -> dict[str, Any]:
        s, topics = stack.settings, Topics(stack.settings.kafka.topic_prefix)
        producer = make_producer(s)
        feeds = FeedWatcher(s, topics.feeds).start()
        dlq = DeadLetterWatcher(s, topics.dlq(INTERACTIONS)).start()
        driver = TrafficDriver(self.world, producer, topics, self.opts.rate, self.opts.malformed_fraction,
                               self.opts.feedback_fraction, self.opts.seed)
        metrics_url = stack.url("worker", "/metrics") if "worker" in stack.ports else ""
        try:
            driver.publish_catalog(time.time())
            self._wait_catalog(driver, metrics_url)
            with Live(console=self.console, refresh_per_second=4, transient=False) as live:
                self._traffic(driver, feeds, metrics_url, stack, live)
                if "api" in stack.ports:
                    self.run.api = probe_api(stack.url("api"), sorted(feeds.latest)[:10])
                producer.flush(30)
                self._catch_up(driver, feeds, metrics_url, live)
            self.latencies_ms = list(feeds.latencies_ms)
            return summarise(self.run, driver, feeds, dlq, self.world)
        finally:
            feeds.stop()
            dlq.stop()
            producer.close(5)

    def _wait_catalog(self, driver: TrafficDriver, metrics_url: str) -> None:
        """Let the worker ingest the catalogue before traffic starts (bounded)."""
        deadline = time.monotonic() + self.opts.catalog_wait_s
        with self.console.status(f"loading the catalogue ({driver.items_published} items)"):
            while metrics_url and time.monotonic() < deadline:
                counts = worker_counts(metrics_url, agent="items")
                if counts is not None and counts.applied + counts.dead_lettered >= driver.items_published:
                    return
                time.sleep(0.3)

    def _traffic(self, driver: TrafficDriver, feeds: FeedWatcher, metrics_url: str, stack: Stack,
                 live: Live) -> None:
        o = self.opts
        end = max(self.run.started + o.duration_s, time.monotonic() + o.min_traffic_s)
        begin = last_tick = last_sample = time.monotonic()
        item_carry = 0.0
        while (now := time.monotonic()) < end:
            driver.tick(now - last_tick, feeds.latest)
            item_carry += (now - last_tick) * o.new_items_per_min / 60.0
            if item_carry >= 1:
                driver.add_items(int(item_carry), time.time())
                item_carry -= int(item_carry)
            last_tick = now
            if now - last_sample >= 1.0:
                self._refresh(driver, feeds, metrics_url, "traffic", end - now, live)
                last_sample = now
                if dead := stack.dead_children():
                    raise RuntimeError(f"{', '.join(dead)} died during the demo; see {stack.log_dir}")
            time.sleep(0.05)
        self.run.traffic_s = time.monotonic() - begin

    def _refresh(self, driver: TrafficDriver, feeds: FeedWatcher, metrics_url: str, phase: str,
                 remaining: float, live: Live) -> None:
        counts = worker_counts(metrics_url) if metrics_url else None
        if counts is not None:
            self.run.counts = counts
        self.run.sample(driver, feeds)
        live.update(render(_snapshot(self.run, driver, feeds, phase, remaining)))

    def _catch_up(self, driver: TrafficDriver, feeds: FeedWatcher, metrics_url: str, live: Live) -> None:
        """Wait (bounded) until the worker accounts for every event, then briefly for feeds to settle."""
        deadline = time.monotonic() + self.opts.catch_up_s
        while time.monotonic() < deadline:
            self._refresh(driver, feeds, metrics_url, "catching up", deadline - time.monotonic(), live)
            c = self.run.counts
            if c.applied + c.dead_lettered >= driver.produced or not metrics_url:
                break
            time.sleep(0.5)
        settle_end, last = time.monotonic() + self.opts.settle_s, feeds.feeds
        while time.monotonic() < settle_end:
            time.sleep(1.0)
            self._refresh(driver, feeds, metrics_url, "settling", settle_end - time.monotonic(), live)
            if feeds.feeds == last:
                return
            last = feeds.feeds
