"""Prometheus metrics of the worker: throughput per agent, lag, DLQ by reason, effect latency."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SIZE_BUCKETS = (1, 4, 16, 64, 256, 1024, 2048, 4096, 8192, 16384)


@dataclass
class WorkerMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.events = Counter("streamrec_worker_events", "records consumed by outcome",
                              ["agent", "outcome"], registry=r)
        self.dlq = Counter("streamrec_worker_dead_lettered", "records sent to the DLQ",
                           ["agent", "reason"], registry=r)
        self.dlq_failed = Counter("streamrec_worker_dead_letter_failed",
                                  "invalid records the broker refused to dead-letter for good: logged "
                                  "with their coordinates and skipped", ["agent", "error"], registry=r)
        self.batch_seconds = Histogram("streamrec_worker_batch_seconds", "batch processing time",
                                       ["agent"], buckets=LATENCY_BUCKETS, registry=r)
        self.fetch_records = Histogram("streamrec_worker_fetch_records", "records per fetch (all topics)",
                                       buckets=SIZE_BUCKETS, registry=r)
        self.apply_records = Histogram("streamrec_worker_apply_records", "records per apply (the batches a "
                                       "lane merged)", ["agent"], buckets=SIZE_BUCKETS, registry=r)
        self.fetch_blocked = Counter("streamrec_worker_fetch_blocked_seconds", "time the fetch waited on a "
                                     "bound: records not yet applied, or batches not yet followed up",
                                     ["bound"], registry=r)
        self.effect_latency = Histogram("streamrec_worker_effect_latency_seconds",
                                        "record timestamp to durable effect (every 4th record of a batch)",
                                        ["agent"], buckets=LATENCY_BUCKETS, registry=r)
        self.lag = Gauge("streamrec_worker_consumer_lag", "highwater - next offset",
                         ["topic", "partition"], registry=r)
        self.phase_seconds = Histogram("streamrec_worker_phase_seconds", "time per batch phase",
                                       ["agent", "phase"], buckets=LATENCY_BUCKETS, registry=r)
        self.child_exits = Counter("streamrec_worker_child_exits", "handoff or archive child processes "
                                   "that died in use (their pending batches are retried with a new one)",
                                   ["child"], registry=r)
        self.retries = Counter("streamrec_worker_store_retries", "optimistic-lock or store retries",
                               ["agent"], registry=r)
