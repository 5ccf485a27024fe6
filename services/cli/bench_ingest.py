"""``streamrec bench ingest --events N --json PATH``: stream-worker throughput and effect latency.

Against an embedded Tansu broker and redis-server: pre-produce a catalog and N simulator interactions,
start ONE ``python -m streams.worker`` (all effects on; Feast pushes when ``--feast``), and measure
  * events_per_s: sustained drain rate between 10 % and 90 % of the backlog (worker startup excluded);
  * effect_latency_ms_p50/p99: a paced stream after the drain, produce -> effect visible in Redis
    (the event's dedupe marker, written in the same MULTI/EXEC as all its effects);
  * rss_mb / cpu_percent of the worker process (cpu: 100 = one core), and events_per_cpu_s (the rate
    per CPU-second the worker actually got: the capacity of one core on a machine shared with others).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import redis
import typer
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from core.events import Interaction, encode
from core.settings import Settings, load_settings
from core.topics import Topics
from feature_store.online.keys import Keys
from iokit import ChildProcess, free_port, spawn, wait_for_tcp
from models.simulator import World, WorldConfig
from services.localstack import local_infra

app = typer.Typer()


@app.command()
def ingest(events: int = typer.Option(100_000, "--events", min=1000),
           json_path: Path | None = typer.Option(None, "--json"),
           latency_events: int = typer.Option(3000, "--latency-events", min=100),
           latency_rate: float = typer.Option(500.0, "--latency-rate", min=10.0),
           feast: bool = typer.Option(True, "--feast/--no-feast", help="push features to Feast"),
           content_model: bool = typer.Option(True, "--content-model/--no-content-model",
                                              help="embed item text with the sentence model")) -> None:
    """Run the ingest benchmark and print (and optionally write) its JSON result."""
    result = run_ingest_bench(events=events, latency_events=latency_events, latency_rate=latency_rate,
                              feast=feast, content_model=content_model)
    text = json.dumps(result, indent=2)
    typer.echo(text)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(text)


def run_ingest_bench(events: int, latency_events: int = 3000, latency_rate: float = 500.0,
                     feast: bool = True, content_model: bool = True) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp, local_infra(Path(tmp)) as infra:
        s = load_settings(data_dir=tmp, kafka={"bootstrap_servers": infra.kafka_bootstrap},
                          redis={"url": infra.redis_url, "key_prefix": "sr:bench:"},
                          worker={"metrics_port": free_port(), "feature_push": feast,
                                  "content_model": content_model})
        if feast:
            from feature_store.repository import apply

            apply(s)
        return _run(s, events, latency_events, latency_rate)


def _run(s: Settings, events: int, latency_events: int, latency_rate: float) -> dict[str, Any]:
    topics = Topics(s.kafka.topic_prefix)
    admin = KafkaAdminClient(bootstrap_servers=s.kafka.bootstrap_servers)
    admin.create_topics([NewTopic(n, s.kafka.partitions, 1) for n in topics.all()])
    admin.close()
    world = World(WorldConfig(n_users=2000, n_items=2000, seed=1))
    now = time.time()
    prod = KafkaProducer(bootstrap_servers=s.kafka.bootstrap_servers, linger_ms=20, batch_size=1 << 18)
    for up in world.item_upserts(now - 3600):
        prod.send(topics.items, key=up.item_id.encode(), value=encode(up))
    backlog = list(world.traffic(events, now - 600, events / 590.0))
    _produce(prod, topics.interactions, backlog)
    worker = spawn("worker", [sys.executable, "-m", "streams.worker"], s.data_dir / "logs", _env(s))
    try:
        drain = _measure_drain(s, worker, events)
        latency = _measure_latency(s, prod, topics, world, latency_events, latency_rate, events)
    except (StopIteration, OSError) as exc:
        log = worker.log_path.read_text()[-3000:] if worker.log_path else ""
        raise RuntimeError(f"worker made no progress ({exc!r}); log tail:\n{log}") from None
    finally:
        worker.stop()
    return {**drain, **latency, "events": events, "workers": 1, "partitions": s.kafka.partitions,
            "batch_size": s.worker.batch_size, "load_avg_1m": os.getloadavg()[0], "cpus": os.cpu_count(),
            "feast_push": s.worker.feature_push}


def _env(s: Settings) -> dict[str, str]:
    return {"STREAMREC_DATA_DIR": str(s.data_dir),
            "STREAMREC_KAFKA__BOOTSTRAP_SERVERS": str(s.kafka.bootstrap_servers),
            "STREAMREC_REDIS__URL": str(s.redis.url), "STREAMREC_REDIS__KEY_PREFIX": s.redis.key_prefix,
            "STREAMREC_WORKER__METRICS_PORT": str(s.worker.metrics_port), "STREAMREC_LOG_LEVEL": "WARNING",
            "STREAMREC_WORKER__FEATURE_PUSH": str(s.worker.feature_push).lower(),
            "STREAMREC_WORKER__CONTENT_MODEL": str(s.worker.content_model).lower(),
            "STREAMREC_FEAST__PROJECT": s.feast.project}


def _produce(prod: KafkaProducer, topic: str, evs: list[Interaction]) -> None:
    for ev in evs:
        prod.send(topic, key=ev.user_id.encode(), value=encode(ev))
    prod.flush()


def _processed(r: redis.Redis, keys: Keys) -> int:
    return int(r.hget(keys.stats, "interactions:processed") or 0)  # type: ignore[arg-type]


def _measure_drain(s: Settings, worker: ChildProcess, events: int) -> dict[str, Any]:
    r, keys = redis.Redis.from_url(s.redis.url or ""), Keys(s.redis.key_prefix)
    wait_for_tcp("127.0.0.1", s.worker.metrics_port, 60, worker.proc)
    proc = psutil.Process(worker.pid)
    samples: list[tuple[float, int, float]] = []
    rss = 0.0
    deadline = time.monotonic() + max(120.0, events / 200.0)
    while time.monotonic() < deadline:
        n = _processed(r, keys)
        times = proc.cpu_times()
        samples.append((time.monotonic(), n, times.user + times.system))
        rss = max(rss, proc.memory_info().rss / 2**20)
        if n >= events:
            break
        time.sleep(0.1)
    lo = next(x for x in samples if x[1] >= 0.1 * events)
    hi = next((x for x in samples if x[1] >= 0.9 * events), samples[-1])
    secs = max(hi[0] - lo[0], 1e-6)
    rate, cpu = (hi[1] - lo[1]) / secs, (hi[2] - lo[2]) / secs
    return {"events_per_s": round(rate, 1), "rss_mb": round(rss, 1), "cpu_percent": round(100 * cpu, 1),
            "events_per_cpu_s": round(rate / max(cpu, 1e-6), 1), "drained": samples[-1][1] >= events}


def _measure_latency(s: Settings, prod: KafkaProducer, topics: Topics, world: World, n: int,
                     rate: float, already: int) -> dict[str, Any]:
    r, keys = redis.Redis.from_url(s.redis.url or ""), Keys(s.redis.key_prefix)
    evs = [e.model_copy(update={"event_id": f"lat-{k}"}) for k, e in
           enumerate(world.traffic(n, time.time(), rate))]
    sent: dict[tuple[str, str], float] = {}
    seen: dict[tuple[str, str], float] = {}
    done = threading.Event()
    poller = threading.Thread(target=_poll, args=(r, keys, sent, seen, done), daemon=True)
    poller.start()
    start = time.monotonic()
    for k, ev in enumerate(evs):
        delay = start + k / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        prod.send(topics.interactions, key=ev.user_id.encode(), value=encode(ev))
        if k % 10 == 0:
            sent[(ev.user_id, ev.event_id)] = time.monotonic()
    prod.flush()
    deadline = time.monotonic() + 30
    while len(seen) < len(sent) and time.monotonic() < deadline:
        time.sleep(0.05)
    done.set()
    lat = np.array([seen[e] - sent[e] for e in seen]) * 1000
    return {"effect_latency_ms_p50": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
            "effect_latency_ms_p99": round(float(np.percentile(lat, 99)), 1) if len(lat) else None,
            "latency_samples": len(lat), "latency_missing": len(sent) - len(seen), "latency_rate": rate}


def _poll(r: redis.Redis, keys: Keys, sent: dict[tuple[str, str], float], seen: dict[tuple[str, str], float],
          done: threading.Event) -> None:
    while not done.is_set():
        pending = [e for e in list(sent) if e not in seen]
        if pending:
            with r.pipeline(transaction=False) as pipe:
                for e in pending:
                    pipe.exists(keys.dedupe(*e))
                found = pipe.execute()
            now = time.monotonic()
            for e, ok in zip(pending, found, strict=True):
                if ok:
                    seen[e] = now
        time.sleep(0.005)
