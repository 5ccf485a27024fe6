"""``bench serve``'s ``cpu_split``: where the API's CPU during the load went, from the API's own metrics.

Each API worker process counts the CPU of every computed feed in its feed thread
(``streamrec_api_feed_cpu_seconds``), of every shed answer where it is built
(``streamrec_api_shed_cpu_seconds``, on the event loop) and exports its process's, event loop thread's and
feed threads' CPU so far (``streamrec_api_worker_cpu_seconds_total{pid,thread}``). A scrape of the ops port
reaches one worker process (they share the port), so :func:`scrape_workers` scrapes on fresh connections
until it has seen every worker's ``pid``; the bench scrapes before and after the load and sums the
workers' differences. :func:`cpu_split` puts those beside the API's CPU that the bench measured from
outside (psutil, the whole process tree): the parts measured inside the workers, and a residual that no
metric accounts for (the uvicorn supervisor, workers not seen, the scrapes' own timing).
"""

from __future__ import annotations

import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

FEED, SHED, WORKER = "streamrec_api_feed_cpu_seconds", "streamrec_api_shed_cpu_seconds", \
    "streamrec_api_worker_cpu_seconds"
TRIES = 60


@dataclass
class WorkerCounters:
    """One worker process's CPU counters at a scrape (seconds; counts of feeds and shed answers)."""

    feed_s: float = 0.0
    feeds: int = 0
    shed_s: float = 0.0
    sheds: int = 0
    threads_s: dict[str, float] = field(default_factory=dict)  # process, loop, feed_pool


def parse(text: str) -> tuple[str, WorkerCounters]:
    """(pid, counters) of one scrape of the API's /metrics (every tenant's feeds summed)."""
    counters, pid = WorkerCounters(), ""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == FEED + "_sum":
                counters.feed_s += s.value
            elif s.name == FEED + "_count":
                counters.feeds += int(s.value)
            elif s.name == SHED + "_sum":
                counters.shed_s += s.value
            elif s.name == SHED + "_count":
                counters.sheds += int(s.value)
            elif s.name == WORKER + "_total":
                pid = s.labels["pid"]
                counters.threads_s[s.labels["thread"]] = s.value
    return pid, counters


def scrape_workers(metrics_url: str, workers: int, tries: int = TRIES) -> dict[str, WorkerCounters]:
    """Every worker's counters (pid -> counters), scraping ``metrics_url`` on a fresh connection each time
    until ``workers`` pids were seen or ``tries`` scrapes were made (then: those seen)."""
    seen: dict[str, WorkerCounters] = {}
    for _ in range(tries):
        with urllib.request.urlopen(metrics_url, timeout=5.0) as answer:  # noqa: S310 - the bench's own URL
            pid, counters = parse(answer.read().decode())
        if pid:
            seen.setdefault(pid, counters)
        if len(seen) >= workers:
            break
        time.sleep(0.01)
    return seen


def _delta(before: dict[str, WorkerCounters], after: dict[str, WorkerCounters]) -> WorkerCounters:
    """The sum over the workers seen in both scrapes of what they counted in between."""
    total = WorkerCounters(threads_s=defaultdict(float))
    for pid in before.keys() & after.keys():
        b, a = before[pid], after[pid]
        total.feed_s += a.feed_s - b.feed_s
        total.feeds += a.feeds - b.feeds
        total.shed_s += a.shed_s - b.shed_s
        total.sheds += a.sheds - b.sheds
        for name, value in a.threads_s.items():
            total.threads_s[name] += value - b.threads_s.get(name, 0.0)
    return total


def _ms(seconds: float, count: int) -> float | None:
    return round(seconds * 1e3 / count, 3) if count else None


def cpu_split(before: dict[str, WorkerCounters], after: dict[str, WorkerCounters], api_cpu_s: float,
              answered: int, workers: int) -> dict[str, object]:
    """The API's CPU over the load (``api_cpu_s``, measured from outside) in parts that sum to it:
    the feed threads' CPU of computed feeds, the shed answers', and the remainder (per request the API
    answered: ``answered``, feed requests and /healthz), itself split into the workers' event loop
    (less the shed answers built there), their feed threads outside computing a feed, their other
    threads, and the residual outside every measured worker thread."""
    d = _delta(before, after)
    threads = d.threads_s
    remainder = api_cpu_s - d.feed_s - d.shed_s
    loop, pool, process = threads.get("loop", 0.0), threads.get("feed_pool", 0.0), threads.get("process", 0.0)
    parts = {"loop_thread_less_shed": loop - d.shed_s, "feed_threads_outside_feeds": pool - d.feed_s,
             "other_worker_threads": process - loop - pool, "residual_outside_workers": api_cpu_s - process}
    return {
        "api_cpu_s": round(api_cpu_s, 3), "workers_seen": len(before.keys() & after.keys()),
        "workers": workers,
        "computed_feeds": d.feeds, "feed_thread_cpu_s": round(d.feed_s, 3),
        "feed_thread_cpu_ms_per_feed": _ms(d.feed_s, d.feeds),
        "shed_answers": d.sheds, "shed_cpu_s": round(d.shed_s, 3),
        "shed_cpu_ms_per_shed": _ms(d.shed_s, d.sheds),
        "requests_answered": answered, "remainder_cpu_s": round(remainder, 3),
        "remainder_cpu_ms_per_request": _ms(remainder, answered),
        "remainder_parts_s": {k: round(v, 3) for k, v in parts.items()},
        "remainder_parts_ms_per_request": {k: _ms(v, answered) for k, v in parts.items()},
    }
