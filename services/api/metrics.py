"""Prometheus metrics of one feed-API app (own registry, so several apps can live in one process), and
the CPU of the worker process by thread (:class:`WorkerCpu`, once per process).

CPU per feed, split (``streamrec bench serve``'s ``cpu_split``): ``streamrec_api_feed_cpu_seconds`` is
each computed feed's CPU in its feed thread (``time.thread_time`` around ``FeedService.compute``),
``streamrec_api_shed_cpu_seconds`` each shed answer's (around building it, on the event loop), and
``streamrec_api_worker_cpu_seconds_total{pid,thread}`` the process's and its threads' CPU so far; a scrape
of the ops port reaches one worker process, hence the ``pid``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from starlette.types import Scope

from services.api.admission import Answer, Shed
from services.artifacts.loader import register_loader_metrics
from services.pipeline.forgotten import register_forget_metrics

_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_CPU_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1)
FEED_THREAD = "feed"  # FeedService's pool's thread name prefix


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.feeds = Counter("streamrec_api_feeds", "Feeds served", ["degraded"], registry=self.registry)
        self.latency = Histogram("streamrec_api_feed_seconds", "Feed latency", buckets=_BUCKETS,
                                 registry=self.registry)
        self.stage = Histogram("streamrec_api_stage_seconds", "Pipeline stage latency", ["stage"],
                               buckets=_BUCKETS, registry=self.registry)
        self.events = Counter("streamrec_api_events", "Events accepted or rejected", ["outcome"],
                              registry=self.registry)
        self.catalog = Counter("streamrec_api_catalog_records", "Items and users accepted or rejected",
                               ["kind", "outcome"], registry=self.registry)
        self.refused = Counter("streamrec_api_requests_refused",
                               "Requests refused: body_too_large (413), batch_too_long, invalid (422)",
                               ["reason"], registry=self.registry)
        self.shed = Counter("streamrec_api_feeds_shed",
                            "Feed requests shed under overload: in_flight, loop_lag, expected_wait (on "
                            "arrival), queue_timeout",
                            ["reason"], registry=self.registry)
        self.store_unavailable = Counter("streamrec_api_store_unavailable",
                                         "Requests answered degraded because a store was unreachable",
                                         ["endpoint"], registry=self.registry)
        self.loop_lag = Histogram("streamrec_api_loop_lag_seconds",
                                  "How late each 10 ms tick of the event loop ran (admission's LoopLag)",
                                  buckets=_BUCKETS, registry=self.registry)
        self.loop_behind = Gauge("streamrec_api_loop_behind_seconds",
                                 "How far behind the event loop runs now (LoopLag.behind_s)",
                                 registry=self.registry)
        self.feed_cpu = Histogram("streamrec_api_feed_cpu_seconds",
                                  "CPU of each computed feed in its feed thread (funnel, metrics, impression "
                                  "queueing, JSON encoding; time.thread_time)", buckets=_CPU_BUCKETS,
                                  registry=self.registry)
        self.shed_cpu = Histogram("streamrec_api_shed_cpu_seconds",
                                  "CPU of building each shed answer (503 or degraded feed), on its thread",
                                  buckets=_CPU_BUCKETS, registry=self.registry)
        register_loader_metrics(self.registry)
        register_forget_metrics(self.registry)

    def timed_shed(self, shed: Shed) -> Shed:
        """``shed`` observing its thread CPU in ``shed_cpu``."""
        def timed(scope: Scope, reason: str) -> Answer:
            t0 = time.thread_time()
            try:
                return shed(scope, reason)
            finally:
                self.shed_cpu.observe(time.thread_time() - t0)
        return timed


def thread_cpu_s(ident: int | None) -> float:
    """CPU seconds of a live thread of this process (0 for one gone or unknown)."""
    if ident is None:
        return 0.0
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(ident))
    except OSError:  # ProcessLookupError included: the thread is gone
        return 0.0


class WorkerCpu(Collector):
    """``streamrec_api_worker_cpu_seconds_total{pid,thread}``: this process's CPU so far (``process``), its
    event loop thread's (``loop``, once :attr:`loop_ident` is set) and its live feed threads'
    (``feed_pool``), read at scrape time."""

    def __init__(self) -> None:
        self.loop_ident: int | None = None

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("streamrec_api_worker_cpu_seconds",
                                     "CPU seconds of this API worker process, its event loop thread and its "
                                     "feed threads", labels=["pid", "thread"])
        pid = str(os.getpid())
        family.add_metric([pid, "process"], time.process_time())
        family.add_metric([pid, "loop"], thread_cpu_s(self.loop_ident))
        feed = [t.ident for t in threading.enumerate() if t.name.startswith(FEED_THREAD + "_")]
        family.add_metric([pid, "feed_pool"], sum(thread_cpu_s(i) for i in feed))
        yield family
