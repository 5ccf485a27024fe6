"""``streamrec bench loop``: the whole stack live, simulated users responding to the feeds it publishes.

Starts the stack as ``streamrec up`` runs it (broker, Redis, worker, API, publisher, scheduler) on a
fresh data dir, publishes the simulator's catalogue, then for ``--duration`` seconds of wall-clock
traffic runs :class:`services.demo.closed_loop.ClosedLoop`: users arrive, see the feeds from the feeds
topic and react by the hidden click model, browse organically, and new items arrive. The scheduler
trains and promotes on its own (``trainer.min_new_events`` and ``scheduler.train_check_interval_s``
are set from ``--min-new-events`` and ``--train-check``, and reported). Every feed shown is scored
against a random and an oracle feed for the same user at the same moment (:mod:`services.demo.truth`).

Writes the JSON (keys: ``ctr``, ``lift_vs_random``, ``gap_captured``, ``cold_user_lift``,
``new_items_shown_within_60s``, ``promotions``, ``timeline``, ...) and an HTML report next to it.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil
import typer
from rich.console import Console

from core.settings import Settings, load_settings
from core.topics import Topics
from models.simulator import World, WorldConfig
from services.demo.closed_loop import ClosedLoop, FeedIntake, LoopOptions, wait_until
from services.demo.kafka_io import make_producer
from services.demo.loop_report import write_loop_html
from services.demo.loop_results import Span, results
from services.demo.scrape import worker_counts
from services.stack import Stack, terminate_as_interrupt

app = typer.Typer(help="Closed-loop benchmark.")
console = Console(stderr=True)
TICK_S = 0.05


def bench_settings(settings: Settings, min_new_events: int, train_check_s: float, hashing: bool) -> Settings:
    """The stack's settings for the bench: its own data dir, the training trigger it reports."""
    updates: dict[str, Any] = {
        "data_dir": settings.data_dir / "bench-loop" / "stack",
        "trainer": settings.trainer.model_copy(update={"min_new_events": min_new_events}),
        "scheduler": settings.scheduler.model_copy(update={"train_check_interval_s": train_check_s})}
    if hashing:
        updates["worker"] = settings.worker.model_copy(update={"content_model": False})
    return settings.model_copy(update=updates)


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    for name, pid in pids.items():
        try:
            t = psutil.Process(pid).cpu_times()
            out[name] = t.user + t.system
        except psutil.Error:
            continue
    return out


def _busy() -> float:
    """CPU seconds the whole machine spent busy (every process, ours or not) so far."""
    t = psutil.cpu_times()
    return float(sum(t)) - t.idle - getattr(t, "iowait", 0.0)


def _pids(stack: Stack) -> dict[str, int]:
    return {**{c.name: c.pid for c in stack.infra}, **{n: c.pid for n, c in stack.children.items()}}


def registry(settings: Settings) -> dict[str, Any]:
    """Every model version and training run the scheduler recorded (services.metadata)."""
    from services.metadata import MetadataStore

    meta = MetadataStore(settings.database_url)
    try:
        models = [{"kind": m.kind, "version": m.version, "status": m.status, "created_at": m.created_at,
                   "promoted_at": m.promoted_at, "metrics": m.metrics, "baseline_metrics": m.baseline_metrics,
                   "n_train": m.n_train, "reason": m.reason} for m in meta.models()]
        runs = [{"started_at": j.started_at, "ended_at": j.ended_at, "trigger": j.trigger,
                 "outcome": j.outcome, "error": j.error, "details": j.details}
                for j in meta.jobs("train", 200)]
        indexes = [{"version": i.version, "model_version": i.model_version, "status": i.status,
                    "created_at": i.created_at, "items": i.item_count, "recall": i.recall}
                   for i in meta.indexes()]
    finally:
        meta.close()
    return {"models": models, "train_runs": runs, "indexes": indexes}


class LoopBench:
    def __init__(self, settings: Settings, opts: LoopOptions, ready_timeout_s: float = 240.0,
                 catalog_wait_s: float = 180.0) -> None:
        self.settings, self.opts = settings, opts
        self.ready_timeout_s, self.catalog_wait_s = ready_timeout_s, catalog_wait_s
        self.world = World(WorldConfig(n_users=opts.users, n_items=opts.items, seed=opts.seed,
                                       epoch=time.time(), id_prefix=f"b{int(time.time())}-"))

    def run(self) -> dict[str, Any]:
        shutil.rmtree(self.settings.data_dir, ignore_errors=True)
        stack = Stack(self.settings, ready_timeout_s=self.ready_timeout_s)
        with terminate_as_interrupt():
            try:
                t0 = time.monotonic()
                stack.start()
                console.print(f"stack up in {time.monotonic() - t0:.0f}s; logs in {stack.log_dir}")
                return self._drive(stack)
            finally:
                stack.stop()

    def _drive(self, stack: Stack) -> dict[str, Any]:
        s = stack.settings
        topics = Topics(s.kafka.topic_prefix)
        producer = make_producer(s)
        intake = FeedIntake(s, topics.feeds).start()
        loop = ClosedLoop(self.world, producer, topics, self.opts)
        try:
            self._load_catalog(stack, loop)
            span, cpu = self._traffic(stack, loop, intake)
            producer.flush(30)
            time.sleep(2.0)
            loop.tick(time.time(), 0.0, intake.queue)  # record the feeds still in flight (no new traffic)
            reg = registry(s)
        finally:
            intake.stop()
            producer.close(5)
        used = {"trainer.min_new_events": s.trainer.min_new_events,
                "scheduler.train_check_interval_s": s.scheduler.train_check_interval_s,
                "worker.content_model": s.worker.content_model, "publisher.feed_size": s.publisher.feed_size,
                "rerank.explore_slots": s.rerank.explore_slots}
        extra = {"cpu": cpu, "settings": used,
                 "child_restarts": dict(stack.restarts), "feeds_undecodable": intake.bad}
        return results(loop, span, reg, extra)

    def _load_catalog(self, stack: Stack, loop: ClosedLoop) -> None:
        """Publish the catalogue and wait (bounded) until the worker has applied it."""
        n = loop.publish_catalog(time.time())
        url = stack.url("worker", "/metrics")

        def loaded() -> bool:
            counts = worker_counts(url, agent="items")
            return counts is not None and counts.applied + counts.dead_lettered >= n

        t0 = time.monotonic()
        ok = wait_until(loaded, self.catalog_wait_s)
        console.print(f"catalogue of {n} items {'loaded' if ok else 'NOT fully loaded'} "
                      f"in {time.monotonic() - t0:.0f}s")

    def _traffic(self, stack: Stack, loop: ClosedLoop, intake: FeedIntake) -> tuple[Span, dict[str, Any]]:
        pids = _pids(stack)
        me = psutil.Process()
        cpu0, stack0, wall0, busy0 = me.cpu_times(), _cpu(pids), time.time(), _busy()
        loads: list[float] = []
        loop.start(wall0)
        last = last_report = time.monotonic()
        while (now := time.time()) - wall0 < self.opts.duration_s:
            mono = time.monotonic()
            loop.tick(now, mono - last, intake.queue)
            last = mono
            if mono - last_report >= 30.0:
                loads.append(psutil.getloadavg()[0])
                stack.revive()
                self._progress(loop, now - wall0)
                last_report = mono
            time.sleep(max(0.0, TICK_S - (time.monotonic() - mono)))
        traffic_s = time.time() - wall0
        cpu1, stack1 = me.cpu_times(), _cpu(pids)
        own = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
        per = {k: round((stack1[k] - v) / traffic_s, 3) for k, v in stack0.items() if k in stack1}
        busy = (_busy() - busy0) / traffic_s
        cost = {"bench_cpu_s": round(own, 2), "bench_cores": round(own / traffic_s, 3), "stack_cores": per,
                "machine_cores": psutil.cpu_count(), "machine_busy_cores": round(busy, 3),
                "other_processes_cores": round(busy - own / traffic_s - sum(per.values()), 3),
                "load_average_1m": {"mean": round(sum(loads) / len(loads), 2) if loads else None,
                                    "max": round(max(loads), 2) if loads else None}}
        return Span(wall0, traffic_s), cost

    def _progress(self, loop: ClosedLoop, t: float) -> None:
        recent = [m for m in loop.moments if m.t >= t - 30.0]
        if recent:
            ours = sum(m.ours for m in recent) / len(recent)
            rnd = sum(m.random for m in recent) / len(recent)
            orc = sum(m.oracle for m in recent) / len(recent)
            gap = (ours - rnd) / (orc - rnd) if orc > rnd else float("nan")
            last = recent[-1]
            console.print(f"t={t:4.0f}s events={loop.produced} visits={loop.visits} "
                          f"feeds={len(loop.published.times)} ctr ours={ours:.4f} random={rnd:.4f} "
                          f"oracle={orc:.4f} lift={ours / rnd:.2f} gap={gap:.2f} "
                          f"serving={last.model_version}/{last.index_version}")
        else:
            console.print(f"t={t:4.0f}s events={loop.produced} feeds={len(loop.published.times)} "
                          "(no visits yet)")


@app.command()
def loop(
    json_path: Path = typer.Option(Path("var/bench/loop.json"), "--json", help="write the results here"),
    report: Path | None = typer.Option(None, help="HTML report (default: next to --json, loop.html)"),
    users: int = typer.Option(2000, min=1), items: int = typer.Option(5000, min=1),
    duration: float = typer.Option(900.0, min=10.0, help="seconds of traffic (wall clock = simulated)"),
    visits: float = typer.Option(8.0, help="feed visits per second (a user shown its latest feed)"),
    organic: float = typer.Option(16.0, help="organic views per second"),
    new_items: float = typer.Option(20.0, help="new items per minute"),
    min_new_events: int = typer.Option(20_000, help="trainer.min_new_events for the scheduler"),
    train_check: float = typer.Option(15.0, help="scheduler.train_check_interval_s"),
    window: float = typer.Option(30.0, help="timeline window, seconds"),
    final_window: float = typer.Option(120.0, help="the 'end' figures are over the last this many seconds"),
    seed: int = 0,
    hashing_content: bool = typer.Option(False, help="hashing content vectors (no sentence model)"),
) -> None:
    """Closed-loop CTR by the simulator's truth vs random and oracle feeds, over time (JSON + HTML)."""
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("kafka", "feast"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    opts = LoopOptions(users=users, items=items, duration_s=duration, visits_per_s=visits,
                       organic_per_s=organic, new_items_per_min=new_items, window_s=window,
                       final_s=final_window, seed=seed)
    settings = bench_settings(load_settings(), min_new_events, train_check, hashing_content)
    out = LoopBench(settings, opts).run()
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(out, indent=2, default=str) + "\n")
    html_path = report or json_path.with_suffix(".html")
    write_loop_html(out, html_path)
    brief = {k: out[k] for k in ("ctr", "lift_vs_random", "gap_captured", "cold_user_lift",
                                 "new_items_shown_within_60s", "event_to_feed_ms", "cpu")}
    promoted = [(p["kind"], p["version"], p["t"]) for p in out["promotions"]]
    typer.echo(json.dumps({**brief, "promotions": promoted, "options": asdict(opts)}, indent=2, default=str))
    console.print(f"results: {json_path}\nreport:  {html_path}")
