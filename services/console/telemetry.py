"""The console's numbers from the processes' own ``/metrics``: a small scraper with a rolling history.

Without a Prometheus (``console.prometheus_url``), the API process scrapes the worker(s), the publisher
and the scheduler itself, every ``console.scrape_interval_s``, keeping ``console.history_s`` of samples
of the few series the console shows. Scraping starts with the first console page and stops after
``console.idle_stop_s`` without one, so an API nobody looks at does no extra work.

Rates come from consecutive samples of one target (a counter that went down was reset: the process
restarted, and its new value is the increase); quantiles from the increase of histogram buckets.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from core.settings import Settings
from iokit import LOOPBACK, read_json

log = logging.getLogger(__name__)
# Only these series are kept (prefix match on the sample name).
WANTED = ("streamrec_worker_events_total", "streamrec_worker_dead_lettered_total",
          "streamrec_worker_consumer_lag", "streamrec_publisher_feeds_total",
          "streamrec_publisher_event_to_feed_seconds_bucket", "streamrec_api_feeds_total",
          "streamrec_worker_effect_latency_seconds_bucket")
_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
Key = tuple[str, tuple[tuple[str, str], ...]]  # (sample name, sorted labels)
Samples = dict[Key, float]
Point = tuple[float, float]


def parse(text: str, wanted: tuple[str, ...] = WANTED) -> Samples:
    """The samples of ``text`` (Prometheus text format) whose name starts with one of ``wanted``."""
    out: Samples = {}
    for line in text.splitlines():
        if not line.startswith(wanted):
            continue
        m = _LINE.match(line)
        if m is None:
            continue
        labels = tuple(sorted(_LABEL.findall(m[2] or "")))
        try:
            out[(m[1], labels)] = float(m[3])
        except ValueError:
            continue
    return out


@dataclass(frozen=True)
class Target:
    name: str
    url: str


def targets(settings: Settings) -> list[Target]:
    """``console.metrics_urls``, else the local stack's processes (its status file), else the ports
    of the settings on this host. The API's own metrics are read in process."""
    configured = settings.console.metrics_urls
    if configured:
        return [Target(f"{name}#{k}" if len(urls) > 1 else name, url)
                for name, urls in configured.items() for k, url in enumerate(urls)]
    status = read_json(Path(settings.data_dir) / "stack.json", {}) or {}
    comps = status.get("components") if isinstance(status, dict) else None
    if isinstance(comps, dict) and not status.get("stopped_at"):
        return [Target(name, f"{c['address']}/metrics") for name, c in sorted(comps.items())
                if c.get("kind") == "process" and name != "api" and str(c.get("address")).startswith("http")]
    ports = {"worker": settings.worker.metrics_port, "publisher": settings.publisher.metrics_port,
             "scheduler": settings.scheduler.health_port}
    return [Target(n, f"http://{LOOPBACK}:{p}/metrics") for n, p in ports.items() if p]


@dataclass
class Scrape:
    """One round: every target's samples (None: it did not answer, with the error)."""

    at: float
    samples: dict[str, Samples | None]
    errors: dict[str, str] = field(default_factory=dict)


def fetch(url: str, timeout_s: float) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - configured URL
        return str(resp.read().decode())


class Scraper:
    """Scrapes ``targets`` (plus ``local``: the API's own registry as text) into a rolling history."""

    def __init__(self, settings: Settings, local: Callable[[], str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        cfg = settings.console
        self.settings, self.local, self.clock = settings, local, clock
        self.interval_s, self.timeout_s = cfg.scrape_interval_s, cfg.timeout_s
        self.idle_stop_s = cfg.idle_stop_s
        self.history: deque[Scrape] = deque(maxlen=max(2, int(cfg.history_s / cfg.scrape_interval_s) + 1))
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(4, thread_name_prefix="console-scrape")
        self._thread: threading.Thread | None = None
        self._last_view = time.monotonic()
        self._stop = threading.Event()

    def touch(self) -> None:
        """A page was opened: keep scraping (start if stopped)."""
        self._last_view = time.monotonic()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="console-scraper", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() - self._last_view < self.idle_stop_s:
            t0 = time.monotonic()
            try:
                self.scrape_once()
            except Exception:  # noqa: BLE001 - the scraper must outlive any one bad round
                log.exception("console scrape failed")
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - t0)))

    def scrape_once(self) -> Scrape:
        found = targets(self.settings)
        answers = list(self._pool.map(self._one, found))
        round_ = Scrape(self.clock(), {t.name: s for t, (s, _) in zip(found, answers, strict=True)},
                        {t.name: e for t, (_, e) in zip(found, answers, strict=True) if e})
        if self.local is not None:
            round_.samples["api"] = parse(self.local())
        with self._lock:
            self.history.append(round_)
        return round_

    def _one(self, target: Target) -> tuple[Samples | None, str]:
        try:
            return parse(fetch(target.url, self.timeout_s)), ""
        except (OSError, ValueError) as exc:
            return None, f"{target.url}: {exc}"

    def snapshot(self) -> list[Scrape]:
        with self._lock:
            return list(self.history)

    def close(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)


# ---- series from the history -------------------------------------------------------------------
def _match(key: Key, name: str, where: Mapping[str, str]) -> bool:
    if key[0] != name:
        return False
    labels = dict(key[1])
    return all(labels.get(k) == v for k, v in where.items())


def _total(samples: Samples, name: str, where: Mapping[str, str], by: str | None = None) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in samples.items():
        if _match(key, name, where):
            group = dict(key[1]).get(by, "") if by else ""
            out[group] = out.get(group, 0.0) + value
    return out


def _increase(prev: float | None, cur: float) -> float:
    return cur if prev is None or cur < prev else cur - prev


def rate(history: list[Scrape], name: str, where: Mapping[str, str] | None = None,
         by: str | None = None) -> dict[str, list[Point]]:
    """Per group (label ``by``), the per-second increase of counter ``name`` between scrapes, summed
    over targets. A target missing from either scrape contributes nothing to that step."""
    series: dict[str, list[Point]] = {}
    for a, b in zip(history, history[1:], strict=False):
        dt = b.at - a.at
        if dt <= 0:
            continue
        step: dict[str, float] = {}
        for target, cur in b.samples.items():
            prev = a.samples.get(target)
            if cur is None or prev is None:
                continue
            before = _total(prev, name, where or {}, by)
            for group, value in _total(cur, name, where or {}, by).items():
                step[group] = step.get(group, 0.0) + _increase(before.get(group), value) / dt
        for group, value in step.items():
            series.setdefault(group, []).append((b.at, value))
    return series


def latest(history: list[Scrape], name: str, by: tuple[str, ...]) -> dict[tuple[str, ...], float]:
    """The newest value of ``name`` per label tuple ``by``, over the newest scrape of each target."""
    out: dict[tuple[str, ...], float] = {}
    for target in {t for s in history for t in s.samples}:
        newest = next((s.samples[target] for s in reversed(history) if s.samples.get(target)), None)
        for key, value in (newest or {}).items():
            if key[0] == name:
                labels = dict(key[1])
                group = tuple(labels.get(b, "") for b in by)
                out[group] = out.get(group, 0.0) + value
    return out


def increase(history: list[Scrape], name: str, by: tuple[str, ...]) -> dict[tuple[str, ...], float]:
    """Per label tuple ``by``, how much counter ``name`` grew over the history (resets counted)."""
    out: dict[tuple[str, ...], float] = {}
    for a, b in zip(history, history[1:], strict=False):
        for target, cur in b.samples.items():
            prev = a.samples.get(target)
            if cur is None or prev is None:
                continue
            for key, value in cur.items():
                if key[0] == name:
                    group = tuple(dict(key[1]).get(x, "") for x in by)
                    out[group] = out.get(group, 0.0) + _increase(prev.get(key), value)
    return out


def _buckets(samples: Samples, name: str) -> dict[float, float]:
    out: dict[float, float] = {}
    for key, value in samples.items():
        if key[0] == name:
            le = dict(key[1]).get("le", "+Inf")
            bound = float("inf") if le == "+Inf" else float(le)
            out[bound] = out.get(bound, 0.0) + value
    return out


def bucket_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus' histogram_quantile over cumulative ``buckets`` (upper bound -> count)."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank, prev_bound, prev_count = q * buckets[bounds[-1]], 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return prev_bound
            span = count - prev_count
            return prev_bound + (bound - prev_bound) * ((rank - prev_count) / span if span else 1.0)
        prev_bound, prev_count = bound, count
    return prev_bound


def quantiles(history: list[Scrape], name: str, qs: tuple[float, ...]) -> dict[str, list[Point]]:
    """Per quantile, its value over each step's new observations (the buckets' increase)."""
    series: dict[str, list[Point]] = {f"p{round(q * 100)}": [] for q in qs}
    for a, b in zip(history, history[1:], strict=False):
        step: dict[float, float] = {}
        for target, cur in b.samples.items():
            prev = a.samples.get(target)
            if cur is None or prev is None:
                continue
            before = _buckets(prev, name)
            for bound, value in _buckets(cur, name).items():
                step[bound] = step.get(bound, 0.0) + _increase(before.get(bound), value)
        for q in qs:
            found = bucket_quantile(q, step)
            if found is not None:
                series[f"p{round(q * 100)}"].append((b.at, found))
    return series
