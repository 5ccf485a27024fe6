"""``streamrec bench serve``: feed latency at an offered rate (open loop) and event -> feed latency.

Without ``--api`` it starts the embedded stack (broker, Redis, worker, feed API, publisher), writes a
synthetic catalog of ``--items`` items plus Zipf-popular interactions straight into the online state
(through the worker's own writer), trains and promotes a two-tower model, its FAISS index over the whole
catalogue and a multi-task ranker (``services.cli.serve_models``), waits until the API serves them, then:

- offers ``--rps`` feed requests per second for ``--duration`` seconds on a fixed schedule; latency is
  measured from each request's scheduled start (so queueing counts: no coordinated omission) into an
  HDR histogram; stage times come from the API's ``Server-Timing`` header;
- meanwhile produces interactions to Kafka and reads the ``feeds`` topic: event -> feed latency is
  ``feed received - trigger_event_ts``;
- every ``--swap-every`` seconds promotes a fresh index version: ``swaps``, ``index_versions_served``
  and ``errors`` (any non-200 or failed request) show whether a hot swap under load costs a request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import typer
from hdrh.histogram import HdrHistogram

from core.errors import StartupError
from core.events import Interaction, InteractionType, ItemUpsert, decode_feed, encode
from core.settings import Settings, load_settings
from core.topics import Topics

app = typer.Typer(help="Feed-serving benchmark.")
log = logging.getLogger(__name__)
CATEGORIES = [f"cat{j}" for j in range(24)]
STAGES = ("retrieval", "features", "ranking", "reranking")
VERSIONS = re.compile(r'"(model_version|index_version)":"([^"]*)"')


Seeded = tuple[list[str], list[Interaction], list[ItemUpsert]]


# ---- seeding ---------------------------------------------------------------------------------
def _apply_plan(client: Any, plan: Any, chunk: int = 5000) -> None:
    """Bench-only fast path: a worker Plan applied with plain pipelined commands (no transaction)."""
    cmds: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    cmds += [("zadd", (k, dict(v)), {}) for k, v in plan.zadd.items() if v]
    cmds += [("zincrby", (k, v, m), {}) for k, mv in plan.zincr.items() for m, v in mv.items()]
    cmds += [("hincrbyfloat", (k, f, v), {}) for k, fv in plan.hincr.items() for f, v in fv.items()]
    cmds += [("hset", (k,), {"mapping": v}) for k, v in plan.hset.items()]
    for k, v in plan.lists.items():
        cmds += [("delete", (k,), {}), ("rpush", (k, *v), {})]
    cmds += [("sadd", (k, *v), {}) for k, v in plan.sadd.items() if v]
    cmds += [("set", (k, v), {"ex": ttl}) for k, (v, ttl) in plan.setex.items()]
    cmds += [("expire", (k, t), {}) for k, t in plan.expire.items()]
    for k in range(0, len(cmds), chunk):
        with client.pipeline(transaction=False) as pipe:
            for name, args, kwargs in cmds[k:k + chunk]:
                getattr(pipe, name)(*args, **kwargs)
            pipe.execute()


def seed(settings: Settings, n_items: int, n_users: int, n_events: int, seed_: int = 0) -> Seeded:
    """Catalog + Zipf interactions planned by the worker's own pure functions. Returns the user ids,
    the interactions and the items (the models are trained on them)."""
    import redis

    from feature_store.online.batch import effect_params, plan_items
    from feature_store.online.effects import plan_interactions
    from feature_store.online.keys import Keys

    rng = np.random.default_rng(seed_)
    now = time.time()
    items = [ItemUpsert(item_id=f"i{j:06d}", categories=[CATEGORIES[j % len(CATEGORIES)]],
                        created_at=now - float(rng.uniform(0, 30 * 86400))) for j in range(n_items)]
    ranks = np.minimum(rng.zipf(1.3, n_events) - 1, n_items - 1)
    users = [f"u{k:05d}" for k in range(n_users)]
    events = [Interaction(event_id=f"seed-{k}", user_id=users[int(rng.integers(n_users))],
                          item_id=f"i{int(r):06d}", type=InteractionType.CLICK,
                          timestamp=now - 600 + 600 * k / n_events,
                          context={"device": "mobile" if k % 3 else "desktop"}) for k, r in enumerate(ranks)]
    keys = Keys(settings.redis.key_prefix)
    cats = {it.item_id: it.categories for it in items}
    client = redis.Redis.from_url(settings.redis.url or "")
    _apply_plan(client, plan_items(items, {}, keys))
    _apply_plan(client, plan_interactions(events, {}, cats, effect_params(settings), keys))
    client.close()
    return users, events, items


# ---- the stack ---------------------------------------------------------------------------------
@contextmanager
def embedded_stack(settings: Settings) -> Iterator[tuple[Settings, str]]:
    from services.stack import PROCESSES, Stack

    specs = [p for p in PROCESSES if p.name in ("worker", "api", "publisher")]
    if hasattr(settings.worker, "content_model"):  # the catalog is seeded directly: no text encoder needed
        settings = settings.model_copy(update={"worker": settings.worker.model_copy(
            update={"content_model": False})})
    stack = Stack(settings, processes=specs).start()
    try:
        yield stack.settings, stack.url("api")
    finally:
        stack.stop()


# ---- open-loop load --------------------------------------------------------------------------
class LoadResult:
    def __init__(self) -> None:
        self.hist = HdrHistogram(1, 60_000_000, 3)  # microseconds
        self.stages: dict[str, list[float]] = {s: [] for s in STAGES}
        self.candidates: list[int] = []
        self.errors = 0
        self.degraded = 0
        self.done = 0
        self.index_versions: set[str] = set()
        self.model_versions: set[str] = set()

    def record(self, resp: httpx.Response, latency_s: float) -> None:
        self.done += 1
        if resp.status_code != 200:
            self.errors += 1
            return
        self.hist.record_value(max(1, int(latency_s * 1e6)))
        for part in resp.headers.get("server-timing", "").split(","):
            name, _, dur = part.strip().partition(";dur=")
            if name in self.stages and dur:
                self.stages[name].append(float(dur))
        self.candidates.append(int(resp.headers.get("x-candidates", "0")))
        self.degraded += '"degraded":true' in resp.text
        for name, value in VERSIONS.findall(resp.text):
            (self.index_versions if name == "index_version" else self.model_versions).add(value)


async def _one(client: httpx.AsyncClient, url: str, scheduled: float, out: LoadResult) -> None:
    await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
    try:
        resp = await client.get(url)
    except httpx.HTTPError:
        out.done += 1
        out.errors += 1
        return
    out.record(resp, time.perf_counter() - scheduled)


async def open_loop(api: str, users: list[str], rps: float, duration_s: float,
                    n: int) -> tuple[LoadResult, float]:
    out = LoadResult()
    rng = np.random.default_rng(1)
    total = int(rps * duration_s)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=api, timeout=10.0, limits=limits) as client:
        start = time.perf_counter() + 0.2
        tasks = [asyncio.create_task(_one(client, f"/v1/feed/{users[int(rng.integers(len(users)))]}?n={n}",
                                          start + k / rps, out)) for k in range(total)]
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return out, elapsed


# ---- event -> feed ---------------------------------------------------------------------------
class EventToFeed:
    """Produces interactions at ``rate`` per second and measures when their feeds arrive."""

    def __init__(self, settings: Settings, users: list[str], rate: float) -> None:
        self.settings, self.users, self.rate = settings, users, rate
        self.topics = Topics(settings.kafka.topic_prefix)
        self.latencies_ms: list[float] = []
        self.stop = threading.Event()
        self._sent: set[float] = set()
        self._threads = [threading.Thread(target=self._produce, daemon=True),
                         threading.Thread(target=self._consume, daemon=True)]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def join(self, drain_s: float = 3.0) -> None:
        time.sleep(drain_s)
        self.stop.set()
        for t in self._threads:
            t.join(timeout=10)

    def _produce(self) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=self.settings.kafka.bootstrap_servers, linger_ms=0)
        rng = np.random.default_rng(2)
        while not self.stop.is_set():
            user = self.users[int(rng.integers(len(self.users)))]
            ts = time.time()
            item = f"i{int(rng.integers(1000)):06d}"
            ev = Interaction(event_id=uuid.uuid4().hex, user_id=user, item_id=item,
                             type=InteractionType.CLICK, timestamp=ts)
            self._sent.add(ts)
            producer.send(self.topics.interactions, key=user.encode(), value=encode(ev))
            producer.flush()
            self.stop.wait(1.0 / self.rate)
        producer.close()

    def _consume(self) -> None:
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(self.topics.feeds, bootstrap_servers=self.settings.kafka.bootstrap_servers,
                                 auto_offset_reset="latest", consumer_timeout_ms=200, fetch_max_wait_ms=20)
        while not self.stop.is_set():
            for rec in consumer:
                feed = decode_feed(rec.value)
                if feed.trigger_event_ts in self._sent:
                    self.latencies_ms.append((time.time() - feed.trigger_event_ts) * 1e3)
        consumer.close()


# ---- report ----------------------------------------------------------------------------------
def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def report(load: LoadResult, elapsed: float, e2f: EventToFeed | None, rps: float,
           n_items: int) -> dict[str, Any]:
    h = load.hist
    ok = h.get_total_count() > 0
    return {
        "items": n_items, "offered_rps": rps, "requests": load.done,
        "latency_ms_p50": h.get_value_at_percentile(50) / 1e3 if ok else None,
        "latency_ms_p99": h.get_value_at_percentile(99) / 1e3 if ok else None,
        "latency_ms_p999": h.get_value_at_percentile(99.9) / 1e3 if ok else None,
        "achieved_rps": round((load.done - load.errors) / elapsed, 2) if elapsed > 0 else 0.0,
        "errors": load.errors, "degraded": load.degraded,
        "candidates_mean": round(float(np.mean(load.candidates)), 1) if load.candidates else 0,
        "stages_ms": {s: {"p50": _pct(v, 50), "p99": _pct(v, 99)} for s, v in load.stages.items()},
        "event_to_feed_ms_p50": _pct(e2f.latencies_ms, 50) if e2f else None,
        "event_to_feed_ms_p99": _pct(e2f.latencies_ms, 99) if e2f else None,
        "event_to_feed_samples": len(e2f.latencies_ms) if e2f else 0,
        "index_versions_served": sorted(load.index_versions),
        "model_versions_served": sorted(load.model_versions),
    }


# ---- models --------------------------------------------------------------------------------------
def wait_for_models(api: str, user: str, versions: dict[str, str], timeout_s: float = 120.0) -> None:
    """Block until a feed carries the promoted ranker and index versions (the API polls the store)."""
    want = {"model_version": versions["ranker"], "index_version": versions["index"]}
    deadline, got = time.monotonic() + timeout_s, {}
    with httpx.Client(base_url=api, timeout=10.0) as client:
        while time.monotonic() < deadline:
            got = dict(VERSIONS.findall(client.get(f"/v1/feed/{user}").text))
            if all(got.get(k) == v for k, v in want.items()):
                return
            time.sleep(0.5)
    raise StartupError(f"the feed API did not load {want} within {timeout_s:.0f}s (serving {got})")


def _load_with_swaps(live: Settings, api_url: str, seeded: Seeded,
                     opts: dict[str, Any]) -> tuple[LoadResult, float, EventToFeed, dict[str, Any]]:
    """Publish + promote the models, wait until served, then the timed load with index swaps."""
    from services.cli.serve_models import IndexSwaps, publish_models

    user_ids, events, items = seeded
    published = publish_models(live, events, items)
    wait_for_models(api_url, user_ids[0], published.versions)
    e2f = EventToFeed(live, user_ids, opts["events_rate"])
    e2f.start()
    swaps = IndexSwaps(published, opts["swap_every"]).start()
    try:
        load, elapsed = asyncio.run(open_loop(api_url, user_ids, opts["rps"], opts["duration"], opts["n"]))
    finally:
        swaps.stop()
    e2f.join()
    return load, elapsed, e2f, {"models_promoted": published.versions, "swap_every_s": opts["swap_every"],
                                "swaps": swaps.swaps, "swap_failures": swaps.failures}


def run_serve_bench(settings: Settings, items: int = 100_000, rps: float = 100.0, duration: float = 30.0,
                    api: str | None = None, n: int = 20, users: int = 5000,
                    events_rate: float = 20.0, swap_every: float = 10.0) -> dict[str, Any]:
    """The whole benchmark; returns the JSON-able result (keys in the module docstring)."""
    if api is not None:
        user_ids = [f"u{k:05d}" for k in range(users)]
        load, elapsed = asyncio.run(open_loop(api, user_ids, rps, duration, n))
        return report(load, elapsed, None, rps, items)
    with embedded_stack(settings) as (live, api_url):
        seeded = seed(live, items, users, n_events=max(items // 2, 10_000))
        opts = {"events_rate": events_rate, "swap_every": swap_every, "rps": rps, "duration": duration,
                "n": n}
        load, elapsed, e2f, extra = _load_with_swaps(live, api_url, seeded, opts)
        return {**report(load, elapsed, e2f, rps, items), **extra}


@app.command()
def serve(items: int = typer.Option(100_000, help="catalog size"),
          rps: float = typer.Option(100.0, help="offered feed requests per second"),
          duration: float = typer.Option(30.0, help="seconds of load"),
          json_path: Path | None = typer.Option(None, "--json", help="write the results here"),
          api: str | None = typer.Option(None, help="URL of a running feed API (else start the stack)"),
          n: int = typer.Option(20, help="feed size"),
          swap_every: float = typer.Option(
              10.0, "--swap-every", min=0.0, help="promote a new index version every S s of load (0: off)"),
          ) -> None:
    """Feed latency p50/p99/p99.9 at the offered rate, per-stage split, and event -> feed latency."""
    logging.basicConfig(level=logging.WARNING)
    settings = load_settings()
    if api is None and settings.data_dir == Path("var"):
        settings = settings.model_copy(update={"data_dir": Path(tempfile.mkdtemp(prefix="bench-serve-"))})
    result = run_serve_bench(settings, items, rps, duration, api, n, swap_every=swap_every)
    text = json.dumps(result, indent=2)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(text)
    typer.echo(text)
