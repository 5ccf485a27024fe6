"""``streamrec demo``: bring the stack up, drive simulator traffic, watch feeds, stop, summarise.

``duration_s`` bounds the run from the command's start to the end of traffic (start-up included;
at least ``min_traffic_s`` of traffic). Then the demo waits, bounded, until every event produced is
accounted for (``events_processed + events_dead_lettered + events_skipped == events_produced``) and
stops the stack. Every feed published is scored by the simulator's truth as it arrives, so the summary
has a learning curve (``personalisation_lift`` per window) beside the end-of-run figure.
A child that crashes is restarted by the stack (bounded) and reported in ``child_restarts``.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.console import Console
from rich.live import Live

from core.settings import Settings
from core.topics import INTERACTIONS, Topics
from models.simulator import World, WorldConfig
from services.demo.kafka_io import DeadLetterWatcher, FeedWatcher, make_producer
from services.demo.progress import Snapshot, render
from services.demo.scrape import DurableCounter, worker_counts
from services.demo.summary import DemoRun, LearningCurve, pct, probe_api, summarise
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
    ready_timeout_s: float = 120.0
    curve_window_s: float = 10.0


@dataclass
class _Live:
    """The moving parts while traffic flows (created once the stack is up)."""

    stack: Stack
    driver: TrafficDriver
    feeds: FeedWatcher
    dlq: DeadLetterWatcher
    durable: DurableCounter
    metrics_url: str
    curve: LearningCurve


class Demo:
    def __init__(self, settings: Settings, opts: DemoOptions, console: Console) -> None:
        self.opts, self.console = opts, console
        self.run = DemoRun()
        self.stack_dir = settings.data_dir / "demo" / "stack"
        self.settings = settings.model_copy(update={"data_dir": self.stack_dir})
        self.world = World(WorldConfig(n_users=opts.n_users, n_items=opts.n_items, seed=opts.seed,
                                       id_prefix=f"d{int(time.time())}-"))
        self.latencies_ms: list[float] = []

    def execute(self) -> dict[str, Any]:
        with terminate_as_interrupt():
            return self._execute()

    def _execute(self) -> dict[str, Any]:
        shutil.rmtree(self.stack_dir, ignore_errors=True)
        stack = Stack(self.settings, ready_timeout_s=self.opts.ready_timeout_s)
        try:
            with self.console.status("starting the stack (broker, redis, worker, api, publisher, scheduler)"):
                stack.start()
            self.run.startup_s = time.monotonic() - self.run.started
            self.console.print(f"stack up in {self.run.startup_s:.1f}s; logs in {stack.log_dir}")
            return self._drive(stack)
        finally:
            with self.console.status("stopping the stack"):
                stack.stop()

    def _drive(self, stack: Stack) -> dict[str, Any]:
        s, topics = stack.settings, Topics(stack.settings.kafka.topic_prefix)
        producer = make_producer(s)
        o = self.opts
        driver = TrafficDriver(self.world, producer, topics, o.rate, o.malformed_fraction,
                               o.feedback_fraction, o.seed)
        lv = _Live(stack, driver, FeedWatcher(s, topics.feeds).start(),
                   DeadLetterWatcher(s, topics.dlq(INTERACTIONS)).start(),
                   DurableCounter(str(s.redis.url), s.redis.key_prefix, self.world.event_id_prefix),
                   stack.url("worker", "/metrics") if "worker" in stack.ports else "",
                   LearningCurve(self.world, self.run.started, self.opts.curve_window_s))
        try:
            lv.driver.publish_catalog(time.time())
            self._wait_catalog(lv)
            with Live(console=self.console, refresh_per_second=4) as live:
                self._traffic(lv, live)
                if "api" in stack.ports:
                    self.run.api = probe_api(stack.url("api"), sorted(lv.feeds.latest)[:10])
                producer.flush(30)
                self._catch_up(lv, live)
            self.latencies_ms = list(lv.feeds.latencies_ms)
            self._score_feeds(lv)
            return summarise(self.run, lv.driver, lv.feeds, lv.dlq, self.world, lv.curve)
        finally:
            lv.feeds.stop()
            lv.dlq.stop()
            lv.durable.close()
            producer.close(5)

    def _wait_catalog(self, lv: _Live) -> None:
        """Let the worker ingest the catalogue before traffic starts (bounded)."""
        deadline = time.monotonic() + self.opts.catalog_wait_s
        with self.console.status(f"loading the catalogue ({lv.driver.items_published} items)"):
            while lv.metrics_url and time.monotonic() < deadline:
                counts = worker_counts(lv.metrics_url, agent="items")
                if counts is not None and counts.applied + counts.dead_lettered >= lv.driver.items_published:
                    return
                time.sleep(0.3)

    def _traffic(self, lv: _Live, live: Live) -> None:
        o = self.opts
        end = max(self.run.started + o.duration_s, time.monotonic() + o.min_traffic_s)
        begin = last_tick = last_sample = time.monotonic()
        item_carry = 0.0
        while (now := time.monotonic()) < end:
            lv.driver.tick(now - last_tick, lv.feeds.latest)
            item_carry += (now - last_tick) * o.new_items_per_min / 60.0
            if item_carry >= 1:
                lv.driver.add_items(int(item_carry), time.time())
                item_carry -= int(item_carry)
            last_tick = now
            if now - last_sample >= 1.0:
                self._refresh(lv, "traffic", end - now, live)
                last_sample = now
            time.sleep(0.05)
        self.run.traffic_s = time.monotonic() - begin

    def _refresh(self, lv: _Live, phase: str, remaining: float, live: Live) -> None:
        lv.stack.revive()
        self.run.restarts = dict(lv.stack.restarts)
        counts = worker_counts(lv.metrics_url) if lv.metrics_url else None
        if counts is not None:
            self.run.metrics = counts
        processed, skipped = lv.durable.count(), lv.durable.skipped()
        if processed is not None:
            self.run.processed = processed
        if skipped is not None:
            self.run.skipped = skipped
        self.run.dead = lv.dlq.count
        self._score_feeds(lv)
        self.run.sample(lv.driver.produced, lv.feeds.feeds)
        live.update(render(self._snapshot(lv, phase, remaining)))

    def _score_feeds(self, lv: _Live) -> None:
        """The feeds that arrived since the last call, into the learning curve (this thread alone
        touches the world: the traffic adds items to it)."""
        while lv.feeds.published:
            arrived, feed = lv.feeds.published.popleft()
            lv.curve.add(arrived, feed)

    def _snapshot(self, lv: _Live, phase: str, remaining: float) -> Snapshot:
        recent = self.run.timeline[-3:]
        rate = float(np.mean([p["produced_per_s"] for p in recent])) if recent else 0.0
        return Snapshot(time.monotonic() - self.run.started, remaining, lv.driver.produced, rate,
                        self.run.processed, self.run.dead, lv.feeds.feeds, len(lv.feeds.latest),
                        pct(list(lv.feeds.latencies_ms), 50), phase)

    def _catch_up(self, lv: _Live, live: Live) -> None:
        """Wait (bounded) until every event is accounted for, then briefly for feeds to settle."""
        deadline = time.monotonic() + self.opts.catch_up_s
        while time.monotonic() < deadline:
            self._refresh(lv, "catching up", deadline - time.monotonic(), live)
            if self.run.accounted >= lv.driver.produced:
                break
            time.sleep(0.5)
        settle_end, last = time.monotonic() + self.opts.settle_s, lv.feeds.feeds
        while time.monotonic() < settle_end:
            time.sleep(1.0)
            self._refresh(lv, "settling", settle_end - time.monotonic(), live)
            if lv.feeds.feeds == last:
                return
            last = lv.feeds.feeds
