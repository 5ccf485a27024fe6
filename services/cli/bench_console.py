"""``streamrec bench console``: how long the operator console's pages take to render, with a catalogue
and a user base in the stores (JSON out).

    flock /work/notes/cpu.lock streamrec bench console --items 100000 --users 10000 \\
        --json var/bench/console.json

It starts the embedded stack (broker, Redis, Feast, the stream worker, the publisher and the feed API,
as ``streamrec up`` does), then writes everything through the real write path: the items with
``PUT /v1/items``, the users with ``PUT /v1/users`` and their Zipf-popular clicks with
``POST /v1/events`` (batches of ``api.max_batch_events``), and waits until the worker has applied them
(its durable counters in Redis: the online state and Feast's rows are the worker's own effects). It
trains and promotes the funnel's models over that catalogue (two-tower, its FAISS index over every
item, a ranker: ``serve_models.publish_models``) and waits until the API serves them.

Each page is then fetched ``--repeats`` times over HTTP, one request at a time, after one warm-up
request: the overview (with its scraper running), models & indexes, drift, experiments, and the feed
inspector for ``--repeats`` different users (each served a feed first, so the page shows the served feed,
the feed now with its explanation and the filtered candidates). A render is the wall time from sending
the request to the last byte of the HTML (``render_ms``); the API's own ``Server-Timing: console``
figure is reported beside it (``server_ms``). A page that answers anything but 200 counts as a failure
(``failures``), never as a fast render. ``met`` holds when every page answered 200 every time and its
slowest render is within ``--budget-ms``. ``load_average_1m`` (before and after the renders, with the
core count) says how busy the machine was: the renders share the cores with the stack and anything else.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import typer

from core.events import Interaction, InteractionType, ItemUpsert
from core.settings import Settings, load_settings
from core.topics import INTERACTIONS, ITEMS, USERS

app = typer.Typer(help="Operator console render benchmark.")
log = logging.getLogger(__name__)
PAGES = ("overview?refresh=0", "models", "drift", "experiments")
CATEGORIES = tuple(f"genre{k}" for k in range(24))
DEVICES = ("mobile", "desktop")


@dataclass
class Seeded:
    items: list[ItemUpsert]
    users: list[str]
    events: list[Interaction]
    seconds: float


# ---- seeding through the API ---------------------------------------------------------------------
def _catalogue(n_items: int, n_users: int, clicks_per_user: int, rng: np.random.Generator,
               now: float) -> Seeded:
    items = [ItemUpsert(item_id=f"i{j:06d}", title=f"item {j}", categories=[CATEGORIES[j % len(CATEGORIES)]],
                        created_at=now - float(rng.uniform(3600, 20 * 86400)), timestamp=now - 900)
             for j in range(n_items)]
    users = [f"u{k:05d}" for k in range(n_users)]
    n = n_users * clicks_per_user
    ranks = np.minimum(rng.zipf(1.3, n) - 1, n_items - 1)
    events = [Interaction(event_id=f"click-{k}", user_id=users[k % n_users], item_id=f"i{int(r):06d}",
                          type=InteractionType.CLICK, timestamp=now - 600 + 540 * k / n,
                          context={"device": DEVICES[k % 2]}) for k, r in enumerate(ranks)]
    return Seeded(items, users, events, 0.0)


def _send(client: httpx.Client, method: str, path: str, records: Sequence[dict[str, Any]],
          batch: int) -> None:
    for start in range(0, len(records), batch):
        resp = client.request(method, path, json=list(records[start:start + batch]))
        if resp.status_code != 202:
            raise RuntimeError(f"{method} {path}: {resp.status_code} {resp.text[:300]}")


def _applied(settings: Settings) -> dict[str, int]:
    """The worker's durable counters (a patient client: the serving one gives up after 100 ms)."""
    import redis

    from feature_store.online.keys import Keys

    client = redis.Redis.from_url(settings.redis.url or "", socket_timeout=30, socket_connect_timeout=30)
    try:
        raw = client.hgetall(Keys(settings.redis.key_prefix).stats)
    finally:
        client.close()
    return {k.decode(): int(float(v)) for k, v in raw.items()}


def _wait_applied(settings: Settings, want: dict[str, int], timeout_s: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    while True:
        stats = _applied(settings)
        if all(stats.get(f"{base}:processed", 0) >= n for base, n in want.items()):
            return stats
        if time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not apply the seeded records ({want}): {stats}")
        time.sleep(1.0)


def seed(settings: Settings, api: str, n_items: int, n_users: int, clicks_per_user: int,
         timeout_s: float, seed_: int = 0) -> Seeded:
    """Items, then users, then clicks, through the API's write routes; returns once all are applied."""
    t0 = time.perf_counter()
    out = _catalogue(n_items, n_users, clicks_per_user, np.random.default_rng(seed_), time.time())
    batch = settings.api.max_batch_events
    with httpx.Client(base_url=api, timeout=60) as client:
        _send(client, "PUT", "/v1/items", [it.model_dump(mode="json") for it in out.items], batch)
        users = [{"user_id": u, "attributes": {"plan": "pro" if k % 4 == 0 else "free"},
                  "timestamp": time.time() - 800} for k, u in enumerate(out.users)]
        _send(client, "PUT", "/v1/users", users, batch)
        _wait_applied(settings, {ITEMS: n_items, USERS: n_users}, timeout_s)  # items before clicks name them
        _send(client, "POST", "/v1/events", [ev.model_dump(mode="json") for ev in out.events], batch)
    _wait_applied(settings, {INTERACTIONS: len(out.events)}, timeout_s)
    out.seconds = time.perf_counter() - t0
    return out


def _wait_serving(api: str, user: str, versions: dict[str, str], timeout_s: float) -> None:
    want = versions["ranker"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        feed = httpx.get(f"{api}/v1/feed/{user}", params={"device": "mobile"}, timeout=30).json()
        if want in str(feed.get("model_version", "")) and feed.get("index_version") == versions["index"]:
            return
        time.sleep(1.0)
    raise RuntimeError(f"the API does not serve ranker {want} and index {versions['index']} yet")


# ---- rendering ---------------------------------------------------------------------------------------
def _fetch(client: httpx.Client, path: str) -> tuple[int, float, float, int]:
    """(status, wall ms to the last byte, the API's Server-Timing console ms, body bytes)."""
    t0 = time.perf_counter()
    resp = client.get(path)
    wall = (time.perf_counter() - t0) * 1e3
    server = -1.0
    for part in resp.headers.get("server-timing", "").split(","):
        name, _, dur = part.strip().partition(";dur=")
        if name == "console" and dur:
            server = float(dur)
    return resp.status_code, wall, server, len(resp.content)


def _summary(samples: list[tuple[int, float, float, int]]) -> dict[str, Any]:
    """Render times over the 200s only; the rest are failures (and a page with none has no times)."""
    ok = [s for s in samples if s[0] == 200]
    out: dict[str, Any] = {"n": len(samples), "failures": len(samples) - len(ok),
                           "statuses": sorted({s[0] for s in samples})}
    if not ok:
        return {**out, "render_ms_p50": None, "render_ms_p95": None, "render_ms_max": None}
    wall, server = np.array([s[1] for s in ok]), np.array([s[2] for s in ok])
    return {**out, "render_ms_p50": round(float(np.percentile(wall, 50)), 1),
            "render_ms_p95": round(float(np.percentile(wall, 95)), 1),
            "render_ms_max": round(float(wall.max()), 1),
            "server_ms_p50": round(float(np.percentile(server, 50)), 1),
            "server_ms_max": round(float(server.max()), 1),
            "html_kb": round(float(np.mean([s[3] for s in ok])) / 1024, 1)}


def render_pages(api: str, users: Sequence[str], repeats: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    with httpx.Client(base_url=api, timeout=60) as client:
        for path in PAGES:
            _fetch(client, f"/console/{path}")  # warm-up (the overview's starts the scraper)
            if path.startswith("overview"):
                time.sleep(3.0)  # a few scrapes, so rates and lag have points
            out[path.split("?")[0]] = _summary([_fetch(client, f"/console/{path}") for _ in range(repeats)])
        picked = list(users[:repeats + 1])
        for u in picked:  # each inspected user was served a feed by this process first
            client.get(f"/v1/feed/{u}", params={"device": "mobile"})
        _fetch(client, f"/console/inspect?user={picked[0]}&context=device%3Dmobile")
        out["inspect"] = _summary([_fetch(client, f"/console/inspect?user={u}&context=device%3Dmobile")
                                   for u in picked[1:]])
    return out


# ---- the run -----------------------------------------------------------------------------------------
@contextmanager
def _stack(settings: Settings) -> Iterator[tuple[Settings, str]]:
    from services.stack import PROCESSES, Stack

    specs = [p for p in PROCESSES if p.name in ("worker", "api", "publisher")]
    stack = Stack(settings, processes=specs, ready_timeout_s=300).start()
    try:
        yield stack.settings, stack.url("api")
    finally:
        stack.stop()


def run_console_bench(settings: Settings, n_items: int, n_users: int, clicks_per_user: int, repeats: int,
                      budget_ms: float, timeout_s: float = 900.0) -> dict[str, Any]:
    from services.cli.serve_models import publish_models

    with _stack(settings) as (live, api):
        seeded = seed(live, api, n_items, n_users, clicks_per_user, timeout_s)
        stats = _applied(live)
        t0 = time.perf_counter()
        published = publish_models(live, seeded.events, seeded.items)
        _wait_serving(api, seeded.users[0], published.versions, timeout_s=300)
        models_s = time.perf_counter() - t0
        step = max(1, len(seeded.users) // (repeats + 1))
        load = [round(os.getloadavg()[0], 2)]
        pages = render_pages(api, seeded.users[::step], repeats)
        load.append(round(os.getloadavg()[0], 2))
    times = [p["render_ms_max"] for p in pages.values() if p["render_ms_max"] is not None]
    slowest = max(times) if times else None
    failures = sum(p["failures"] for p in pages.values())
    return {"items": n_items, "users": n_users, "clicks": len(seeded.events), "repeats": repeats,
            "budget_ms": budget_ms, "seed_s": round(seeded.seconds, 1), "models_s": round(models_s, 1),
            "applied": {b: stats.get(f"{b}:processed", 0) for b in (ITEMS, USERS, INTERACTIONS)},
            "dead_lettered": {b: stats.get(f"{b}:dead_lettered", 0) for b in (ITEMS, USERS, INTERACTIONS)},
            "models": published.versions, "index_recall_at_10": round(published.recall, 3),
            "load_average_1m": {"before": load[0], "after": load[1], "cores": os.cpu_count()},
            "pages": pages, "slowest_render_ms": slowest, "failures": failures,
            "met": failures == 0 and slowest is not None and slowest <= budget_ms}


@app.command("console")
def bench_console(items: int = typer.Option(100_000, min=100), users: int = typer.Option(10_000, min=10),
                  clicks_per_user: int = typer.Option(5, min=1),
                  repeats: int = typer.Option(20, min=1, help="renders per page (inspector: users)"),
                  budget_ms: float = typer.Option(300.0, min=1.0),
                  data_dir: Path | None = typer.Option(None, help="default: a fresh temporary directory"),
                  json_out: Path = typer.Option(Path("var/bench/console.json"), "--json")) -> None:
    """Console page render times with --items items and --users users written through the API."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        settings = load_settings(data_dir=str(data_dir or tmp), worker={"content_model": False})
        result = run_console_bench(settings, items, users, clicks_per_user, repeats, budget_ms)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(result, indent=2))
    typer.echo(json.dumps(result, indent=2))
