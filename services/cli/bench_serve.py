"""``streamrec bench serve``: the feed API at an offered rate, and event -> feed, on the live stack.

Without ``--api`` it starts the embedded stack as ``streamrec up`` does (broker, Redis, the stream worker,
the feed API, the publisher), the API with the command and ``STREAMREC_API__*`` settings of the
Kubernetes Deployment (``serve_seed.deployment``). It seeds ``--items`` items, the users and their
Zipf-popular clicks through Kafka, so the online state and Feast's rows are the worker's own effects
(``feature_rows_nonempty_fraction`` reports how many rows a feed read held values), waits until the
publisher has published the feeds those clicks triggered (``drain_publisher``), trains and promotes
the funnel's models (two-tower + its FAISS index over the catalogue, the learned item-to-item relations,
a ranker over the funnel's features; ``serve_models``), waits until the API serves them, then at once:

- offers ``--rps`` feed requests per second for ``--duration`` s on a fixed schedule (open loop, latency
  from each request's scheduled time) with a lean HTTP client (``serve_load``); every answer is a full
  feed, degraded, shed (503), an error or a timeout, counted apart; ``achieved_rps`` counts full feeds;
- times ``GET /healthz`` on the same server at a low rate (``floor_latency_ms_p50``: the HTTP floor);
- sends clicks at ``--events-rate`` per second and reads the ``feeds`` topic (``event_to_feed_ms_*``,
  ``event_to_feed_missing``: sent events whose feed never came);
- promotes a fresh index version every ``--swap-every`` s (``swaps``);
- measures the CPU seconds of every process of the stack (``cpu_ms_per_feed``: the API's processes'
  CPU over the feeds they computed) and of the bench itself, and splits the API's (``cpu_split``, from
  the API's metrics, ``serve_cpu``): its feed threads' CPU per computed feed, its CPU per shed answer, and
  the remainder (HTTP server, event loop, other threads) per request answered.

JSON keys (kept stable): achieved_rps, latency_ms_p50, latency_ms_p99, latency_ms_max,
full_feed_latency_ms_p99, errors, degraded, shed, feature_rows_nonempty_fraction, candidates_mean,
cpu_ms_per_feed, floor_latency_ms_p50, event_to_feed_ms_p99, event_to_feed_missing, swaps; and
cpu_split (``serve_cpu.cpu_split``).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import typer

from core.errors import StartupError
from core.settings import Settings, load_settings
from services.cli.serve_cpu import WorkerCounters, cpu_split, scrape_workers
from services.cli.serve_load import LoadResult, Pool, max_ms, open_loop, percentile_ms, quantile, run
from services.cli.serve_seed import (
    EventToFeed,
    Seeded,
    apply_deployment,
    check_command,
    deployment,
    drain_publisher,
    seed,
    world,
)

app = typer.Typer(help="Feed-serving benchmark.")
log = logging.getLogger(__name__)
FLOOR_RPS = 20.0
TIMEOUT_S = 5.0


# ---- the stack ---------------------------------------------------------------------------------
@contextmanager
def embedded_stack(settings: Settings) -> Iterator[tuple[Settings, tuple[str, str], dict[str, list[int]]]]:
    """The stack as ``streamrec up`` runs it (minus the scheduler: the bench promotes the models).
    Yields the live settings, (feed API URL, the API's /healthz URL) and the processes' pids."""
    from services.stack import PROCESSES, Stack

    specs = [p for p in PROCESSES if p.name in ("worker", "api", "publisher")]
    stack = Stack(settings, processes=specs).start()
    try:
        pids = {name: [child.pid] for name, child in stack.children.items()}
        pids["redis+broker"] = [c.pid for c in stack.infra]
        # /healthz: on the API's own port, or on its ops port where the stack gives it one
        floor = getattr(stack, "probe_url", stack.url)("api")
        yield stack.settings, (stack.url("api"), floor), pids
    finally:
        stack.stop()


def _tree(pids: list[int]) -> list[psutil.Process]:
    out = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            out += [proc, *proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
    return out


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            continue
    return total


# ---- the measured window -------------------------------------------------------------------------
async def _load(urls: tuple[str, str], users: list[str], rps: float, duration: float,
                n: int, floor_rps: float) -> tuple[LoadResult, LoadResult, float]:
    import asyncio

    rng = np.random.default_rng(1)
    picks = rng.integers(len(users), size=int(rps * duration) + 1)
    feeds, floor = LoadResult(), LoadResult()
    feed_pool, floor_pool = Pool(urls[0], 1024), Pool(urls[1], 8)
    start = time.perf_counter() + 0.2
    await asyncio.gather(
        open_loop(feed_pool, lambda k: f"/v1/feed/{users[int(picks[k])]}?n={n}", rps, duration, TIMEOUT_S,
                  feeds, start),
        open_loop(floor_pool, lambda k: "/healthz", floor_rps, duration, TIMEOUT_S, floor, start))
    elapsed = time.perf_counter() - start
    await feed_pool.close()
    await floor_pool.close()
    return feeds, floor, elapsed


def measure(urls: tuple[str, str], users: list[str],
            opts: dict[str, Any]) -> tuple[LoadResult, LoadResult, float]:
    """(feeds, floor, seconds) of the open-loop load on ``urls`` = (feed API, where /healthz answers)."""
    out: list[tuple[LoadResult, LoadResult, float]] = []

    async def go() -> None:
        out.append(await _load(urls, users, opts["rps"], opts["duration"], opts["n"],
                               opts.get("floor_rps", FLOOR_RPS)))

    run(go)
    return out[0]


def after_load(url: str, users: list[str], n: int) -> dict[str, Any]:
    """Right after the load stops: 2 s at 10 requests/s. Recovered when these are full feeds at once."""
    probe = {"rps": 10.0, "duration": 2.0, "n": n}
    feeds, _, _ = measure((url, url), users, {**probe, "floor_rps": 0.0})
    return {"after_load_full_feeds": feeds.full_feeds, "after_load_requests": feeds.sent,
            "after_load_latency_ms_p50": percentile_ms(feeds.all, 50),
            "after_load_latency_ms_max": max_ms(feeds.all)}


def report(feeds: LoadResult, floor: LoadResult, elapsed: float, opts: dict[str, Any]) -> dict[str, Any]:
    rows = np.array(feeds.rows or [(0, 0)], np.int64)
    answered = feeds.full_feeds + feeds.degraded + feeds.shed
    return {
        "items": opts["items"], "offered_rps": opts["rps"], "duration_s": opts["duration"],
        "requests": feeds.sent,
        "achieved_rps": round(feeds.full_feeds / elapsed, 2) if elapsed > 0 else 0.0,
        "answered_rps": round(answered / elapsed, 2) if elapsed > 0 else 0.0,
        "full_feeds": feeds.full_feeds,
        "latency_ms_p50": percentile_ms(feeds.all, 50), "latency_ms_p99": percentile_ms(feeds.all, 99),
        "latency_ms_p999": percentile_ms(feeds.all, 99.9), "latency_ms_max": max_ms(feeds.all),
        "full_feed_latency_ms_p50": percentile_ms(feeds.full, 50),
        "full_feed_latency_ms_p99": percentile_ms(feeds.full, 99),
        "shed_or_degraded_latency_ms_max": max_ms(feeds.quick),
        "errors": feeds.errors, "timeouts": feeds.timeouts, "degraded": feeds.degraded, "shed": feeds.shed,
        "feature_rows_nonempty_fraction": round(float(rows[:, 0].sum() / max(rows[:, 1].sum(), 1)), 4),
        "candidates_mean": round(float(np.mean(feeds.candidates)), 1) if feeds.candidates else 0,
        "stages_ms": {s: {"p50": quantile(v, 50), "p99": quantile(v, 99)} for s, v in feeds.stages.items()},
        "floor_latency_ms_p50": percentile_ms(floor.all, 50),
        "floor_latency_ms_p99": percentile_ms(floor.all, 99),
        "floor_errors": floor.errors + floor.timeouts + floor.shed,
        "index_versions_served": sorted(feeds.versions["index_version"]),
        "model_versions_served": sorted(feeds.versions["model_version"]),
    }


@dataclass
class Window:
    """What the measured window produced besides the load itself."""

    cpu_s: dict[str, float]  # CPU seconds per process group during the load ("api", "bench", ...)
    e2f: EventToFeed | None
    e2f_missing: int
    swaps: int
    swap_failures: int
    # the API workers' CPU counters (serve_cpu) before and after the load
    workers: tuple[dict[str, WorkerCounters], dict[str, WorkerCounters]] = ({}, {})


def summarise(feeds: LoadResult, floor: LoadResult, elapsed: float, opts: dict[str, Any],
              window: Window) -> dict[str, Any]:
    """The JSON result: ``report`` plus CPU per computed feed (full or degraded: a shed request costs
    no funnel work), event -> feed latency with the missing events, and the swaps."""
    e2f, cpu = window.e2f, window.cpu_s
    computed = feeds.full_feeds + feeds.degraded
    answered = computed + feeds.shed + floor.full_feeds
    split: dict[str, Any] | None = None
    if all(window.workers):
        split = {**cpu_split(*window.workers, cpu.get("api", 0.0), answered, opts.get("api_workers", 1)),
                 "feed_requests_answered": answered - floor.full_feeds, "healthz_answered": floor.full_feeds}
    return {**report(feeds, floor, elapsed, opts),
            "cpu_ms_per_feed": round(cpu.get("api", 0.0) * 1e3 / max(computed, 1), 3),
            "cpu_split": split,
            "cpu_seconds": {k: round(v, 2) for k, v in cpu.items()},
            "cpu_cores_used": {k: round(v / elapsed, 3) for k, v in cpu.items()} if elapsed > 0 else {},
            "event_to_feed_ms_p50": quantile(e2f.latencies_ms, 50) if e2f else None,
            "event_to_feed_ms_p99": quantile(e2f.latencies_ms, 99) if e2f else None,
            "event_to_feed_sent": e2f.sent if e2f else 0, "event_to_feed_received": len(e2f.latencies_ms)
            if e2f else 0, "event_to_feed_missing": window.e2f_missing,
            "events_rate": opts["events_rate"], "swap_every_s": opts["swap_every"], "swaps": window.swaps,
            "swap_failures": window.swap_failures}


def _window(live: Settings, urls: tuple[str, str], data: Seeded, pids: dict[str, list[int]],
            opts: dict[str, Any]) -> dict[str, Any]:
    """Models promoted and served, then the measured window: load, floor, events, swaps, CPU."""
    from services.cli.serve_models import IndexSwaps, publish_models, wait_for_models

    published = publish_models(live, data.events, data.items)
    wait_for_models(urls[0], data.users[0], published.versions)
    procs = {name: _tree(p) for name, p in pids.items()}
    me = psutil.Process()
    e2f = EventToFeed(live, data.users, opts["events_rate"]).start() if opts["events_rate"] > 0 else None
    swaps = IndexSwaps(published, opts["swap_every"]).start()
    workers0 = api_metrics(urls[1], opts["api_workers"])
    cpu0, mine0 = {k: cpu_seconds(v) for k, v in procs.items()}, cpu_seconds([me])
    try:
        feeds, floor, elapsed = measure(urls, data.users, opts)
    finally:
        swaps.stop()
    cpu = {k: cpu_seconds(v) - cpu0[k] for k, v in procs.items()}
    cpu["bench"] = cpu_seconds([me]) - mine0
    workers1 = api_metrics(urls[1], opts["api_workers"])
    recovery = after_load(urls[0], data.users, opts["n"])
    missing = e2f.finish() if e2f is not None else 0
    window = Window(cpu, e2f, missing, swaps.swaps, swaps.failures, (workers0, workers1))
    return {**summarise(feeds, floor, elapsed, opts, window), **recovery,
            "models_promoted": published.versions}


def api_metrics(probe_url: str, workers: int) -> dict[str, WorkerCounters]:
    """The API workers' CPU counters from its ops port ({} where /metrics does not answer there)."""
    try:
        return scrape_workers(probe_url.rstrip("/") + "/metrics", workers)
    except OSError as exc:  # urllib's HTTPError and URLError are OSErrors
        log.warning("no API metrics at %s (%s): no cpu_split", probe_url, exc)
        return {}


def run_serve_bench(settings: Settings, opts: dict[str, Any]) -> dict[str, Any]:
    """The whole benchmark; returns the JSON-able result (keys in the module docstring)."""
    command, env = deployment()
    check_command(command, "services.api")
    settings, applied = apply_deployment(settings, env)
    # the worker's hashing content vectors: encoding 100k titles with the sentence model would take the
    # seeding (not the measured window) tens of minutes on 2 cores
    worker = settings.worker.model_copy(update={"content_model": False})
    settings = settings.model_copy(update={"worker": worker})
    data = world(opts["items"], opts["users"], max(opts["items"] // 2, 10_000))
    with embedded_stack(settings) as (live, urls, pids):
        seeded = seed(live, data)
        seeded.update(drain_publisher(live, data.events))
        result = _window(live, urls, data, pids, {**opts, "api_workers": settings.api.workers})
    return {**result, **seeded, "api_command": command, "api_settings": applied,
            "api_workers": settings.api.workers, "content_vectors": "hashing (worker.content_model=false)",
            "cores": psutil.cpu_count(),
            "load_average_1m": round(psutil.getloadavg()[0], 2)}


def load_only(api: str, opts: dict[str, Any]) -> dict[str, Any]:
    users = [f"u{k:05d}" for k in range(opts["users"])]
    feeds, floor, elapsed = measure((api, opts["floor_url"] or api), users, opts)
    return report(feeds, floor, elapsed, opts)


@app.command()
def serve(items: int = typer.Option(100_000, help="catalog size"),
          rps: float = typer.Option(100.0, help="offered feed requests per second"),
          duration: float = typer.Option(30.0, help="seconds of load"),
          json_path: Path | None = typer.Option(None, "--json", help="write the results here"),
          api: str | None = typer.Option(None, help="URL of a running feed API (else start the stack)"),
          n: int = typer.Option(20, help="feed size"),
          users: int = typer.Option(5000, help="users (seeded with clicks; requests pick them at random)"),
          events_rate: float = typer.Option(20.0, "--events-rate", min=0.0,
                                            help="clicks per second sent for event -> feed (0: none)"),
          swap_every: float = typer.Option(
              10.0, "--swap-every", min=0.0, help="promote a new index version every S s of load (0: off)"),
          floor_url: str | None = typer.Option(
              None, "--floor-url", help="with --api: where that API answers /healthz (default: --api)"),
          logs: Path | None = typer.Option(None, "--logs", help="copy the stack's process logs here"),
          ) -> None:
    """Feed latency at the offered rate (full feeds, degraded, shed, errors, timeouts), the HTTP floor,
    CPU per feed, and event -> feed latency with missing feeds, under index swaps."""
    logging.basicConfig(level=logging.WARNING)
    settings = load_settings()
    scratch = None
    if api is None and settings.data_dir == Path("var"):
        scratch = Path(tempfile.mkdtemp(prefix="bench-serve-"))
        settings = settings.model_copy(update={"data_dir": scratch})
    opts = {"items": items, "rps": rps, "duration": duration, "n": n, "users": users,
            "events_rate": events_rate, "swap_every": swap_every, "floor_url": floor_url}
    try:
        result = load_only(api, opts) if api is not None else run_serve_bench(settings, opts)
    except StartupError as exc:
        raise typer.BadParameter(str(exc)) from exc
    finally:
        if scratch is not None:
            if logs is not None and (scratch / "logs").is_dir():
                shutil.copytree(scratch / "logs", logs, dirs_exist_ok=True)
            shutil.rmtree(scratch, ignore_errors=True)
    text = json.dumps(result, indent=2)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(text)
    typer.echo(text)
