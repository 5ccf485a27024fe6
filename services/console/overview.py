"""The Overview page's numbers, from one of two sources with the same shape:

* :class:`ScrapeSource`: the console's own scraper over the processes' ``/metrics`` (the local stack);
* :class:`PrometheusSource`: PromQL against ``console.prometheus_url`` (Kubernetes), the same series
  as ``rate``/``increase``/``histogram_quantile`` over the plotted window.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.settings import Settings
from services.console import telemetry as tm
from services.console.telemetry import Point, Scraper

EVENTS, DEAD, LAG = "streamrec_worker_events_total", "streamrec_worker_dead_lettered_total", \
    "streamrec_worker_consumer_lag"
PUBLISHED, API_FEEDS = "streamrec_publisher_feeds_total", "streamrec_api_feeds_total"
E2F = "streamrec_publisher_event_to_feed_seconds_bucket"
EFFECT = "streamrec_worker_effect_latency_seconds_bucket"


@dataclass
class Overview:
    source: str
    window_s: float
    ingest: dict[str, list[Point]] = field(default_factory=dict)  # agent -> records applied per second
    lag: dict[tuple[str, str], float] = field(default_factory=dict)  # (topic, partition) -> records
    lag_total: list[Point] = field(default_factory=list)
    dlq: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)  # (agent, reason) ->
    # (dead-lettered within the window, counter now: since each worker's start)
    feeds: dict[str, list[Point]] = field(default_factory=dict)  # publisher per trigger, and "api"
    e2f: dict[str, list[Point]] = field(default_factory=dict)  # p50/p99 event -> feed published, seconds
    effect: dict[str, list[Point]] = field(default_factory=dict)  # p50/p99 event -> durable effect
    targets: list[tuple[str, str]] = field(default_factory=list)  # (name, "ok" or the error)
    collecting: bool = False  # fewer than two scrapes yet: no rates


class Source(Protocol):
    def overview(self) -> Overview: ...


class ScrapeSource:
    def __init__(self, scraper: Scraper) -> None:
        self.scraper = scraper

    def overview(self) -> Overview:
        self.scraper.touch()
        hist = self.scraper.snapshot()
        window = hist[-1].at - hist[0].at if len(hist) > 1 else 0.0
        out = Overview(f"scraped every {self.scraper.interval_s:g} s by this API process", window,
                       collecting=len(hist) < 2)
        out.ingest = tm.rate(hist, EVENTS, {"outcome": "applied"}, by="agent")
        out.lag = {(t, p): v for (t, p), v in tm.latest(hist, LAG, ("topic", "partition")).items()}
        out.lag_total = [(s.at, sum(v for smp in s.samples.values() if smp for k, v in smp.items()
                                    if k[0] == LAG)) for s in hist]
        out.dlq = _dlq(hist)
        out.feeds = {f"publisher {k}": v for k, v in tm.rate(hist, PUBLISHED, by="trigger").items()}
        out.feeds["api"] = tm.rate(hist, API_FEEDS).get("", [])
        out.e2f = tm.quantiles(hist, E2F, (0.5, 0.99))
        out.effect = tm.quantiles(hist, EFFECT, (0.5, 0.99))
        newest = hist[-1] if hist else None
        out.targets = [(n, newest.errors.get(n, "ok") if newest.samples[n] is not None else
                        newest.errors.get(n, "no answer")) for n in sorted(newest.samples)] if newest else []
        return out


def _dlq(hist: list[tm.Scrape]) -> dict[tuple[str, str], tuple[float, float]]:
    now = tm.latest(hist, DEAD, ("agent", "reason"))
    window = tm.increase(hist, DEAD, ("agent", "reason"))
    return {(k[0], k[1]): (window.get(k, 0.0), total) for k, total in sorted(now.items())}


# ---- Prometheus ---------------------------------------------------------------------------------
class PrometheusSource:
    """PromQL over ``console.prometheus_url``; the queries run concurrently, each within timeout_s."""

    def __init__(self, settings: Settings, get: Callable[[str, float], Any] | None = None) -> None:
        cfg = settings.console
        self.base = str(cfg.prometheus_url).rstrip("/")
        self.window_s, self.timeout_s = cfg.history_s, cfg.timeout_s
        self.step_s = max(cfg.scrape_interval_s, cfg.history_s / 240)
        self._get = get or _http_json
        self._pool = ThreadPoolExecutor(6, thread_name_prefix="console-prom")

    def _query(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        url = f"{self.base}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        body = self._get(url, self.timeout_s)
        if body.get("status") != "success":
            raise ValueError(f"Prometheus {path}: {body.get('error', body)}")
        return list(body["data"]["result"])

    def instant(self, expr: str) -> list[tuple[dict[str, str], float]]:
        return [(r["metric"], float(r["value"][1])) for r in self._query("query", {"query": expr})]

    def range(self, expr: str, label: str = "") -> dict[str, list[Point]]:
        end = time.time()
        rows = self._query("query_range", {"query": expr, "start": end - self.window_s, "end": end,
                                           "step": f"{self.step_s:g}"})
        return {r["metric"].get(label, "") if label else "": [(float(t), float(v)) for t, v in r["values"]
                                                              if v not in ("NaN", "+Inf", "-Inf")]
                for r in rows}

    def overview(self) -> Overview:
        w = f"{int(self.window_s)}s"
        applied = f'{EVENTS}{{outcome="applied"}}'
        q = {"ingest": lambda: self.range(f"sum by (agent) (rate({applied}[1m]))", "agent"),
             "lag": lambda: self.instant(f"sum by (topic, partition) ({LAG})"),
             "lag_total": lambda: self.range(f"sum({LAG})"),
             "dlq_window": lambda: self.instant(f"sum by (agent, reason) (increase({DEAD}[{w}]))"),
             "dlq_total": lambda: self.instant(f"sum by (agent, reason) ({DEAD})"),
             "published": lambda: self.range(f"sum by (trigger) (rate({PUBLISHED}[1m]))", "trigger"),
             "api": lambda: self.range(f"sum(rate({API_FEEDS}[1m]))"),
             **{f"e2f{q}": _quantile(self, E2F, q) for q in (50, 99)},
             **{f"effect{q}": _quantile(self, EFFECT, q) for q in (50, 99)}}
        futures = {k: self._pool.submit(fn) for k, fn in q.items()}
        got = {k: f.result(timeout=self.timeout_s * 2) for k, f in futures.items()}
        return self._assemble(got)

    def _assemble(self, got: dict[str, Any]) -> Overview:
        out = Overview(f"Prometheus {self.base}", self.window_s)
        out.ingest = got["ingest"]
        out.lag = {(m.get("topic", ""), m.get("partition", "")): v for m, v in got["lag"]}
        out.lag_total = got["lag_total"].get("", [])
        totals = {(m.get("agent", ""), m.get("reason", "")): v for m, v in got["dlq_total"]}
        window = {(m.get("agent", ""), m.get("reason", "")): v for m, v in got["dlq_window"]}
        out.dlq = {k: (window.get(k, 0.0), totals.get(k, 0.0)) for k in sorted({*totals, *window})}
        out.feeds = {f"publisher {k}": v for k, v in got["published"].items()}
        out.feeds["api"] = got["api"].get("", [])
        out.e2f = {f"p{q}": got[f"e2f{q}"].get("", []) for q in (50, 99)}
        out.effect = {f"p{q}": got[f"effect{q}"].get("", []) for q in (50, 99)}
        out.targets = [("prometheus", "ok")]
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _quantile(src: PrometheusSource, bucket: str, q: int) -> Callable[[], dict[str, list[Point]]]:
    return lambda: src.range(f"histogram_quantile({q / 100}, sum by (le) (rate({bucket}[1m])))")


def _http_json(url: str, timeout_s: float) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - configured URL
        return json.loads(resp.read())

