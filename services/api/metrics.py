"""Prometheus metrics of one feed-API app (own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.artifacts.loader import register_loader_metrics
from services.pipeline.forgotten import register_forget_metrics

_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


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
        register_loader_metrics(self.registry)
        register_forget_metrics(self.registry)
