"""``streamrec bench ingest --events N --json PATH [--workers W --partitions P]``: stream-worker
throughput, its CPU cost, and effect / feature latency at 80 % of the measured maximum.

Against an embedded Tansu broker and a redis-server (or, with ``--redis-cluster``, a local 3-master
Redis Cluster), with every effect on (Feast rows, content vectors of item upserts with the sentence
model in the worker's encoder process):

1. a catalogue is produced and applied, the workers stop; N interactions (with about one new item
   per 1,000) are produced as a backlog; W workers start in one consumer group over P partitions;
2. ``events_per_s``: the drain rate between 10 % and 90 % of the backlog (start-up excluded);
   ``cpu_s_per_1k_events``: CPU seconds of the workers (encoder children included) per 1,000 events
   in that window, with the same for redis, the broker and this process, the cores each used and how
   busy the whole machine was (what bounds the rate on a small machine);
3. ``latency_target_events_per_s`` = 80 % of that rate is produced, paced, for ``--latency-s``
   (``latency_measured_at_events_per_s``: the rate actually produced, lower when this process cannot
   keep up);
   ``effect_latency_ms_*``: produce -> the event's dedupe marker in Redis (same script as its
   effects); ``feature_latency_ms_*``: produce -> Feast's ``user_realtime`` row of its user carries a
   timestamp at or after the event's;
4. ``rss_mb``: the largest worker process; ``encoder_rss_mb``: its encoder child.

With W > 1 the same drain is first run with one worker (``single_worker``, same data on its own
topics and keys) and ``scaling`` = W-worker rate / one-worker rate.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import typer
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from core.events import ItemUpsert, encode
from core.settings import Settings, load_settings
from core.topics import Topics
from feature_store.online.keys import Keys
from feature_store.online.redis_state import redis_client
from iokit import ChildProcess, free_port, spawn
from models.simulator import World, WorldConfig
from services.cli.ingest_probe import LatencyProbe, Sampler, hottest_slot_share, memory_profile
from services.localstack import local_infra

app = typer.Typer()
N_USERS, N_ITEMS = 2000, 2000


@app.command()
def ingest(events: int = typer.Option(200_000, "--events", min=1000),
           json_path: Path | None = typer.Option(None, "--json"),
           workers: int = typer.Option(1, "--workers", min=1),
           partitions: int = typer.Option(4, "--partitions", min=1),
           latency_s: float = typer.Option(30.0, "--latency-s", min=5.0),
           feast: bool = typer.Option(True, "--feast/--no-feast", help="write Feast's online rows"),
           content_model: bool = typer.Option(True, "--content-model/--no-content-model",
                                              help="embed item text with the sentence model"),
           redis_cluster: bool = typer.Option(False, "--redis-cluster", help="a local 3-master cluster"),
           single_baseline: bool = typer.Option(True, "--single-baseline/--no-single-baseline",
                                                help="with --workers > 1, also drain with one worker"),
           latency_curve: str = typer.Option("", "--latency-curve", help="also measure the latencies at "
                                             "these paced rates, e.g. 1000,3000 (latency_curve)"),
           ) -> None:
    """Run the ingest benchmark and print (and optionally write) its JSON result."""
    rates = [float(r) for r in latency_curve.split(",") if r.strip()]
    result = run_ingest_bench(events, workers, partitions, latency_s, feast, content_model, redis_cluster,
                              single_baseline and workers > 1, rates)
    text = json.dumps(result, indent=2)
    typer.echo(text)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(text)


@dataclass
class Infra:
    settings: Settings
    pids: dict[str, list[int]] = field(default_factory=dict)


def run_ingest_bench(events: int, workers: int = 1, partitions: int = 4, latency_s: float = 30.0,
                     feast: bool = True, content_model: bool = True, cluster: bool = False,
                     baseline: bool = False, curve: list[float] | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp, ExitStack() as stack:
        infra = _infra(Path(tmp), stack, partitions, feast, content_model, cluster)
        result: dict[str, Any] = {}
        if baseline:
            single = Run(infra, "w1", 1, events)
            result["single_worker"] = single.drain()
            single.stop()
        run = Run(infra, f"w{workers}", workers, events)
        try:
            result.update(run.drain())
            result.update(run.latency(0.8 * result["events_per_s"], latency_s))
            if curve:
                result["latency_curve"] = [_point(run.latency(r, latency_s)) for r in curve]
        finally:
            run.stop()
        result.update(hottest_slot_share(infra.settings, World(WorldConfig(n_users=N_USERS, n_items=N_ITEMS,
                                                                           seed=1))))
        result.update(rss_mb=round(run.sampler.rss_mb, 1), encoder_rss_mb=round(run.sampler.child_rss_mb, 1),
                      workers=workers, partitions=partitions, events=events, redis_cluster=cluster,
                      feast_rows=feast, content_model=content_model,
                      batch_size=infra.settings.worker.batch_size, cpus=os.cpu_count(),
                      load_avg_1m=round(os.getloadavg()[0], 2))
        if baseline:
            result["scaling"] = round(result["events_per_s"] / result["single_worker"]["events_per_s"], 3)
        return result


def _point(out: dict[str, Any]) -> dict[str, Any]:
    keys = ("latency_measured_at_events_per_s", "latency_applied_events_per_s", "effect_latency_ms_p50",
            "effect_latency_ms_p99", "feature_latency_ms_p50", "feature_latency_ms_p99", "effect_missing",
            "feature_missing", "latency_cores_used_by_role")
    return {k: out[k] for k in keys}


def _infra(tmp: Path, stack: ExitStack, partitions: int, feast: bool, content_model: bool,
           cluster: bool) -> Infra:
    local = stack.enter_context(local_infra(tmp, need_redis=not cluster))
    pids = {"broker": [local.children[0].pid], "bench": [os.getpid()]}
    url = local.redis_url
    if cluster:
        from services.local_cluster import local_cluster

        lc = stack.enter_context(local_cluster(tmp / "cluster", tmp / "logs"))
        url, pids["redis"] = lc.url, [c.pid for c in lc.children]
    else:
        pids["redis"] = [local.children[1].pid]
    kafka = {"bootstrap_servers": local.kafka_bootstrap, "partitions": partitions}
    s = load_settings(data_dir=str(tmp), kafka=kafka,
                      redis={"url": url, "key_prefix": "sr:bench:"}, feast={"project": "bench_ingest"},
                      worker={"feature_push": feast, "content_model": content_model})
    if feast:
        from feature_store.repository import apply

        apply(s)
    return Infra(s, pids)


class Run:
    """One group of ``n`` workers on its own topics and keys."""

    def __init__(self, infra: Infra, name: str, n: int, events: int) -> None:
        base = infra.settings
        self.infra, self.n, self.events, self.name = infra, n, events, name
        self.s = base.model_copy(update={
            "kafka": base.kafka.model_copy(update={"topic_prefix": f"{name}-"}),
            "redis": base.redis.model_copy(update={"key_prefix": f"sr:{name}:"}),
            "worker": base.worker.model_copy(update={"group_id": f"bench-{name}"})})
        self.topics, self.keys = Topics(self.s.kafka.topic_prefix), Keys(self.s.redis.key_prefix)
        self.client = _bench_client(self.s)
        self.world = World(WorldConfig(n_users=N_USERS, n_items=N_ITEMS, seed=1))
        self.workers: list[ChildProcess] = []
        self.paced = 0  # interactions the latency phases produced
        pids = dict(infra.pids)
        self.sampler = Sampler(lambda: self._stat("interactions:processed"), self._pids)
        self._infra_pids = pids

    def _pids(self, role: str) -> list[int]:
        return [w.pid for w in self.workers] if role == "workers" else self._infra_pids[role]

    def _stat(self, name: str) -> int:
        return int(self.client.hget(self.keys.stats, name) or 0)  # type: ignore[arg-type]

    def drain(self) -> dict[str, Any]:
        admin = KafkaAdminClient(bootstrap_servers=self.s.kafka.bootstrap_servers)
        admin.create_topics([NewTopic(t, self.s.kafka.partitions, 1) for t in self.topics.all()])
        admin.close()
        prod = _producer(self.s)
        catalog = self.world.item_upserts(time.time() - 3600)
        _send(prod, [(self.topics.items, it.item_id, encode(it)) for it in catalog])
        self._start()
        self._wait(lambda: self._stat("items:processed") >= len(catalog), 600, "the catalogue")
        self.stop()
        self._produce_backlog(prod)
        self._start()
        deadline = time.monotonic() + max(300.0, self.events / 200.0)
        while time.monotonic() < deadline and self.sampler.sample().processed < self.events:
            self._check_alive()
            time.sleep(0.2)
        if self.sampler.samples[-1].processed < self.events:
            raise RuntimeError(f"{self.name}: drained {self.sampler.samples[-1].processed} of {self.events}")
        memory = memory_profile(self.client, self.s.redis.key_prefix,
                                self.s.feast.project if self.s.worker.feature_push else None,
                                self.world.user_ids, self.world.item_ids)
        return {**self.sampler.window(0.1, 0.9, self.events), "drained": True, "memory": memory}

    def _produce_backlog(self, prod: KafkaProducer) -> None:
        now, rate = time.time(), self.events / 590.0
        world = World(WorldConfig(n_users=N_USERS, n_items=N_ITEMS, seed=1, new_item_rate=rate / 1000))
        records = []
        for ev in world.stream(self.events, now - 600, rate):
            topic = self.topics.items if isinstance(ev, ItemUpsert) else self.topics.interactions
            records.append((topic, ev.item_id if isinstance(ev, ItemUpsert) else ev.user_id, encode(ev)))
        _send(prod, records)
        prod.close()

    def latency(self, rate: float, seconds: float) -> dict[str, Any]:
        """Produce at ``rate`` (paced every 10 ms) and watch every 50th event.

        The records are encoded before the clock starts, each stamped with the wall time it is due
        at, so the paced loop only sleeps and sends: the producer is not the system under test, and
        its CPU (``bench`` in ``latency_cores_used_by_role``) is what a separate producer host would
        spend. An event sent late keeps its due stamp; latencies are timed from the actual send.
        """
        # a phase starts with the worker caught up (an earlier phase above capacity left a backlog)
        self._wait(lambda: self._stat("interactions:processed") >= self.events + self.paced, 600,
                   "the previous phase's backlog")
        probe = LatencyProbe(_bench_client(self.s), self.keys,
                             self.s.feast.project if self.s.worker.feature_push else None)
        n, t0 = int(rate * seconds) + 1, time.time() + 1.0
        records = [(ev.event_id, ev.user_id, ev.timestamp, ev.user_id.encode(), encode(ev)) for ev in (
            ev.model_copy(update={"event_id": f"lat{self.paced}-{k}", "timestamp": t0 + k / rate})
            for k, ev in enumerate(self.world.traffic(n, t0, rate)))]
        probe.start()
        prod = PacedProducer(self.s.kafka.bootstrap_servers or "", self.topics.interactions)
        time.sleep(max(0.0, t0 - time.time()))
        before, start = self.sampler.sample(), time.monotonic()
        for k, (event_id, user_id, ts, key, value) in enumerate(records):
            due = start + k / rate
            if due > time.monotonic() + 0.01:
                time.sleep(due - time.monotonic())
            prod.send(key, value)
            if k % 50 == 0:
                probe.watch(event_id, user_id, ts)
        prod.flush()
        self.paced += n
        produced_s = time.monotonic() - start
        out = probe.finish(30.0)
        after = self.sampler.sample()
        applied = (after.processed - before.processed) / max(after.t - before.t, 1e-6)
        # the rate the events were actually produced at (this process may fall short of the target
        # on a loaded machine: the latencies are then those of the lower rate, and say so)
        return {**out, "latency_measured_at_events_per_s": round(n / produced_s, 1),
                "latency_target_events_per_s": round(rate, 1),
                "latency_applied_events_per_s": round(applied, 1), "latency_phase_s": round(produced_s, 1),
                **{f"latency_{k}": v for k, v in self.sampler.between(before, after).items()}}

    def _start(self) -> None:
        env = _env(self.s)
        argv = [sys.executable, "-m", "streams.worker"]
        self.workers = [spawn(f"{self.name}-worker-{j}", argv, self.s.data_dir / "logs",
                              {**env, "STREAMREC_WORKER__METRICS_PORT": str(free_port())})
                        for j in range(self.n)]

    def _check_alive(self) -> None:
        for w in self.workers:
            if not w.alive():
                tail = w.log_path.read_text()[-3000:] if w.log_path else ""
                raise RuntimeError(f"{w.name} exited with {w.returncode}; log tail:\n{tail}")

    def _wait(self, pred: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            self._check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: timed out waiting for {what}")
            time.sleep(0.2)

    def stop(self) -> None:
        for w in self.workers:
            self.sampler._memory()  # noqa: SLF001 - the last reading before they go
            w.stop()
        self.workers = []


def _bench_client(s: Settings) -> redis.Redis:
    """The bench's own Redis client (sampling, probes): a long socket timeout, so a Redis busy with a
    worker's batch on a loaded machine delays a reading instead of aborting the run (the workers keep
    the settings' timeouts)."""
    return redis_client(s.model_copy(update={"redis": s.redis.model_copy(update={"socket_timeout_s": 30.0})}))


def _producer(s: Settings) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=s.kafka.bootstrap_servers, linger_ms=5, batch_size=1 << 18)


class PacedProducer:
    """The latency phase's producer: librdkafka (confluent-kafka, as for the API's impressions) spends
    ~2.5 us of CPU per record where kafka-python spends ~90, which on 2 cores was CPU taken from the
    worker under test (a real producer runs elsewhere)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from confluent_kafka import Producer  # a runtime dependency; imported when a bench runs

        from services.publisher.kafka_io import SAME_PARTITIONS

        self.topic = topic
        self._p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all",
                            "log_level": 3, **SAME_PARTITIONS})
        self._n = 0

    def send(self, key: bytes, value: bytes) -> None:
        while True:
            try:
                self._p.produce(self.topic, key=key, value=value)
                break
            except BufferError:  # the local queue is full: let librdkafka deliver
                self._p.poll(0.01)
        self._n += 1
        if self._n % 256 == 0:
            self._p.poll(0)

    def flush(self) -> None:
        """Deliver everything, then close (an idle librdkafka client left open kept the embedded
        broker busy: 0.3 of a core more per phase)."""
        left = self._p.flush(60)
        self._p.close()
        if left:
            raise RuntimeError(f"bench ingest: {left} records still undelivered after 60 s")


def _send(prod: KafkaProducer, records: list[tuple[str, str, bytes]]) -> None:
    for topic, key, value in records:
        prod.send(topic, key=key.encode(), value=value)
    prod.flush()


def _env(s: Settings) -> dict[str, str]:
    return {"STREAMREC_DATA_DIR": str(s.data_dir),
            "STREAMREC_KAFKA__BOOTSTRAP_SERVERS": str(s.kafka.bootstrap_servers),
            "STREAMREC_KAFKA__TOPIC_PREFIX": s.kafka.topic_prefix,
            "STREAMREC_KAFKA__PARTITIONS": str(s.kafka.partitions),
            "STREAMREC_REDIS__URL": str(s.redis.url), "STREAMREC_REDIS__KEY_PREFIX": s.redis.key_prefix,
            "STREAMREC_WORKER__GROUP_ID": s.worker.group_id, "STREAMREC_LOG_LEVEL": "WARNING",
            "STREAMREC_WORKER__FEATURE_PUSH": str(s.worker.feature_push).lower(),
            "STREAMREC_WORKER__CONTENT_MODEL": str(s.worker.content_model).lower(),
            "STREAMREC_FEAST__PROJECT": s.feast.project}

