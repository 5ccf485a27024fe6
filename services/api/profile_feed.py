"""``python -m services.api.profile_feed``: the API's CPU per feed, in one process, without HTTP.

What ``streamrec bench serve`` measures from outside (the API's CPU over the feeds it computed), taken
apart in one process so a profiler can see it:

* ``seed`` (once per ``--data-dir``, kept there): the stack's broker, Redis (append-only file) and
  stream worker; the bench's catalogue, users and Zipf-popular clicks through Kafka
  (``serve_seed.seed``: the worker's own effects and Feast pushes) and its trained and promoted models
  (``serve_models.publish_models``), then the stack stops. About as long as the bench's seeding: run it
  under ``flock /work/notes/cpu.lock`` on a shared host.
* ``run``: a redis-server on that append-only file, the API's pipeline as the API builds it
  (``services.pipeline.build.build_pipeline``, the Deployment's settings, one-thread native pools), its
  clock shifted back to the seeding's end (so popularity epochs, ages and caches see the seeded state
  as fresh); then ``--feeds`` feeds of random seeded users, each timed with ``time.process_time``
  (the whole process: hot-swap and cache-reload threads too, as the API pays them) and
  ``time.thread_time`` (the request's own thread), plus the JSON encoding of each feed.
  ``--profile`` prints cProfile's top functions by cumulative and by own time (CPU time of the request
  thread, not wall time).

Example:
    flock /work/notes/cpu.lock python -m services.api.profile_feed seed --items 100000
    python -m services.api.profile_feed run --feeds 400 --profile
"""

from __future__ import annotations

# isort: off
import services.pipeline.threads  # noqa: F401 - first: one-thread native pools before numpy loads
# isort: on

import cProfile
import json
import logging
import pstats
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import typer

from core.settings import Settings, load_settings

app = typer.Typer(help="CPU per feed of the API's funnel, in process.", add_completion=False)
log = logging.getLogger(__name__)
STATE_FILE = "profile_feed.json"
DEFAULT_DIR = Path("var/profile_feed")


@dataclass
class Timings:
    cpu_ms: list[float]
    thread_ms: list[float]
    encode_ms: list[float]
    candidates: list[int]
    degraded: int
    top10: dict[str, list[str]]
    stages: dict[str, list[float]]
    scores10: dict[str, list[float]]

    def summary(self) -> dict[str, Any]:
        def q(values: list[float], p: float) -> float:
            return round(float(np.percentile(values, p)), 3) if values else 0.0

        return {"feeds": len(self.cpu_ms), "cpu_ms_per_feed_mean": round(float(np.mean(self.cpu_ms)), 3),
                "cpu_ms_per_feed_p50": q(self.cpu_ms, 50), "cpu_ms_per_feed_p99": q(self.cpu_ms, 99),
                "thread_cpu_ms_mean": round(float(np.mean(self.thread_ms)), 3),
                "encode_ms_mean": round(float(np.mean(self.encode_ms)), 3),
                "candidates_mean": round(float(np.mean(self.candidates)), 1), "degraded": self.degraded,
                "stages_ms_mean": {k: round(float(np.mean(v)), 3) for k, v in self.stages.items()}}


def base_settings(data_dir: Path) -> Settings:
    """The bench's settings: the Deployment's API values, the worker's hashing content vectors."""
    from services.cli.serve_seed import apply_deployment, deployment

    settings = load_settings()
    settings, _ = apply_deployment(settings, deployment()[1])
    worker = settings.worker.model_copy(update={"content_model": False})
    return settings.model_copy(update={"data_dir": data_dir.resolve(), "worker": worker})


@app.command()
def seed(items: int = typer.Option(100_000, help="catalog size"),
         users: int = typer.Option(5000, help="users (seeded with clicks)"),
         data_dir: Path = typer.Option(DEFAULT_DIR, "--data-dir", help="where the seeded state is kept"),
         ) -> None:
    """Seed the catalogue, users, clicks and models through the real write path (as bench serve)."""
    from services.cli.serve_models import publish_models
    from services.cli.serve_seed import seed as seed_world
    from services.cli.serve_seed import world
    from services.localstack import wipe_local_state
    from services.stack import PROCESSES, Stack

    logging.basicConfig(level=logging.WARNING)
    settings = base_settings(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    wipe_local_state(settings)
    (data_dir / STATE_FILE).unlink(missing_ok=True)
    data = world(items, users, max(items // 2, 10_000))
    stack = Stack(settings, processes=[p for p in PROCESSES if p.name == "worker"]).start()
    try:
        seeded = seed_world(stack.settings, data)
        published = publish_models(stack.settings, data.events, data.items)
    finally:
        stack.stop()
    state = {**seeded, "user_ids": data.users, "seeded_at": time.time(), "versions": published.versions}
    (data_dir / STATE_FILE).write_text(json.dumps(state))
    typer.echo(json.dumps({k: v for k, v in state.items() if k != "user_ids"}, indent=2))


def _wait_models(pipeline: Any, reader: Any, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        models = pipeline.models.current
        if models.ranker is not None and models.index is not None and models.user_tower is not None \
                and reader.wait(0.5):
            return
        time.sleep(0.2)
    raise typer.BadParameter("the seeded models or the feature reader did not load in time")


def measure(pipeline: Any, users: list[str], feeds: int, n: int, seed_: int = 0,
            profiler: cProfile.Profile | None = None) -> Timings:
    from core.events import encode

    rng = np.random.default_rng(seed_)
    picks = rng.integers(len(users), size=feeds)
    out = Timings([], [], [], [], 0, {}, {}, {})
    for k in picks.tolist():
        user = users[k]
        if profiler is not None:
            profiler.enable()
        c0, t0 = time.process_time(), time.thread_time()
        result = pipeline.feed(user, n)
        t1 = time.thread_time()
        body = encode(result.feed)
        c1, t2 = time.process_time(), time.thread_time()
        if profiler is not None:
            profiler.disable()
        out.cpu_ms.append((c1 - c0) * 1e3)
        out.thread_ms.append((t1 - t0) * 1e3)
        out.encode_ms.append((t2 - t1) * 1e3)
        out.candidates.append(result.candidates)
        out.degraded += int(result.feed.degraded)
        out.top10.setdefault(user, [it.item_id for it in result.feed.items[:10]])
        out.scores10.setdefault(user, [it.score for it in result.feed.items[:10]])
        for stage, ms in result.stages_ms.items():
            out.stages.setdefault(stage, []).append(ms)
        del body
    return out


@app.command()
def run(feeds: int = typer.Option(300, help="feeds to time (after the warm-up)"),
        warmup: int = typer.Option(100, help="untimed feeds first (caches, lazy loads)"),
        n: int = typer.Option(20, help="feed size"),
        profile: bool = typer.Option(False, help="print cProfile's top functions"),
        top: int = typer.Option(40, help="functions listed per cProfile table"),
        data_dir: Path = typer.Option(DEFAULT_DIR, "--data-dir", help="the seeded state (see seed)"),
        json_path: Path | None = typer.Option(None, "--json", help="write the summary (and top-10s) here"),
        frozen: bool = typer.Option(False, help="a fixed clock (the seeding's end + 60 s): the same state "
                                    "and users give the same feeds run after run (for --against)"),
        against: Path | None = typer.Option(None, help="a --json of an earlier run: count the users whose "
                                            "top-10 differs"),
        ) -> None:
    """CPU per feed of the pipeline over the seeded state."""
    from services.localstack import REDIS_DIR, start_redis
    from services.pipeline.build import build_pipeline
    from services.pipeline.threads import serving_process

    logging.basicConfig(level=logging.WARNING)
    state_file = data_dir / STATE_FILE
    if not state_file.is_file():
        raise typer.BadParameter(f"no seeded state in {data_dir}: run `seed` first")
    state = json.loads(state_file.read_text())
    serving_process()
    url, redis_child = start_redis(data_dir / REDIS_DIR, data_dir / "logs", appendonly=True, timeout_s=60)
    settings = base_settings(data_dir)
    settings = settings.model_copy(update={"redis": settings.redis.model_copy(update={"url": url})})
    _wait_loaded(settings)
    pipeline, close = build_pipeline(settings)
    shift = time.time() - state["seeded_at"]
    pipeline.clock = (lambda: state["seeded_at"] + 60.0) if frozen else (lambda: time.time() - shift)
    try:
        _wait_models(pipeline, pipeline.reader)
        measure(pipeline, state["user_ids"], warmup, n, seed_=1)
        # the request thread's CPU clock: wall time would count the waits on Redis (and on a shared host,
        # on other processes) as the funnel's own cost
        profiler = cProfile.Profile(time.thread_time) if profile else None
        timings = measure(pipeline, state["user_ids"], feeds, n, profiler=profiler)
    finally:
        close()
        redis_child.stop()
    summary = timings.summary()
    if profiler is not None:
        for order in ("cumulative", "tottime"):
            pstats.Stats(profiler).strip_dirs().sort_stats(order).print_stats(top)
    if against is not None:
        before = json.loads(against.read_text())["top10"]
        same = [u for u, ids in timings.top10.items() if u in before]
        summary["top10_differs"] = sum(before[u] != timings.top10[u] for u in same)
        summary["top10_compared"] = len(same)
        old = json.loads(against.read_text()).get("scores10", {})
        summary["top10_score_max_diff"] = max((abs(a - b) for u in same if u in old
                                               for a, b in zip(old[u], timings.scores10[u], strict=False)),
                                              default=0.0)
    typer.echo(json.dumps(summary, indent=2))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({**summary, "top10": timings.top10, "scores10": timings.scores10}))


def _wait_loaded(settings: Settings, timeout_s: float = 120.0) -> None:
    """redis-server answers LOADING while it replays the append-only file."""
    import redis

    from feature_store.online.redis_state import redis_client

    client, deadline = redis_client(settings), time.monotonic() + timeout_s
    try:
        while True:
            try:
                client.ping()
                return
            except redis.BusyLoadingError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        client.close()


if __name__ == "__main__":
    app()
