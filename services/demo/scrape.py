"""Reading the worker's Prometheus ``/metrics`` (the source of ``events_processed``)."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

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
