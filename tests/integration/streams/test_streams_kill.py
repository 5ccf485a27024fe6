"""Two workers in one group over four partitions; one of them is SIGKILLed three times mid-stream
(and, once, frozen past its session so that it comes back as a zombie the guards must fence). Each
time the other takes its partitions over, replays what was not committed, and the killed one rejoins
(rebalances both ways). After catch-up every counter, posterior and feature state in Redis, and every
stream feature in Feast online, equals a crash-free recomputation from the input (0 lost, 0 applied
twice), replays did happen, and a final SIGTERM drains and commits every offset. The steady
worker's archive child is SIGKILLed once too: the worker counts it (``child_exits``) and retries its
batches; the archive then holds every event once, as the worker decoded it, with its item's categories.

On one redis-server and on a local three-master Redis Cluster (where a batch is one script per
shard, so a kill can land between shards)."""

from __future__ import annotations

import json
import signal
import time
import urllib.request

import psutil
import pytest
from kafka import KafkaConsumer, TopicPartition
from streams_harness import (
    assert_feast_matches,
    assert_same,
    cluster_url,  # noqa: F401 - fixture
    dump,
    interactions,
    items,
    producer,
    ready,
    reference_state,
    start_worker,
    stats,
    stream_settings,  # noqa: F401 - fixture
    wait_for,
    with_duplicates,
)

from core.events import Interaction, ItemUpsert, encode
from core.settings import Settings
from core.topics import INTERACTIONS, ITEMS, Topics
from feature_store.archive import ParquetArchive
from feature_store.repository import apply
from iokit import ChildProcess, free_port

pytestmark = pytest.mark.integration
N_EVENTS, CHUNKS = 20_000, 4


def _on(request: pytest.FixtureRequest, s: Settings) -> Settings:
    w = s.worker.model_copy(update={"feature_push": True})
    if request.param == "cluster":
        url = request.getfixturevalue("cluster_url")
        return s.model_copy(update={"worker": w, "redis": s.redis.model_copy(update={"url": url})})
    return s.model_copy(update={"worker": w})


@pytest.fixture(params=["redis", "cluster"])
def kill_settings(request: pytest.FixtureRequest, stream_settings: Settings) -> Settings:  # noqa: F811
    return _on(request, stream_settings)


def _worker(s: Settings, name: str) -> tuple[ChildProcess, Settings]:
    own = s.model_copy(update={"worker": s.worker.model_copy(update={"metrics_port": free_port()})})
    return start_worker(own, name), own


def test_kill_one_of_two_workers_three_times_state_equals_recomputation(kill_settings: Settings) -> None:
    s = kill_settings
    apply(s)
    topics = Topics(s.kafka.topic_prefix)
    now = time.time()
    catalog = items(60, now)
    unique = interactions(N_EVENTS, users=300, n_items=60, now=now)
    stream = with_duplicates(unique, 0.05)
    prod = producer(s)
    for it in catalog:
        prod.send(topics.items, key=it.item_id.encode(), value=encode(it))
    prod.flush()
    (steady, steady_s), (victim, victim_s) = _worker(s, "steady"), _worker(s, "victim-0")
    wait_for(lambda: stats(s).get("items:processed", 0) == len(catalog), 60, "catalog", victim)

    size = len(stream) // CHUNKS + 1
    kills = 0
    for c in range(CHUNKS):
        for ev in stream[c * size:(c + 1) * size]:
            prod.send(topics.interactions, key=ev.user_id.encode(), value=encode(ev))
        prod.flush()
        if c == 1:
            _freeze(victim, s.worker.session_timeout_s + 2.0)  # comes back a zombie
        if c < CHUNKS - 1:
            floor = c * size + 300
            wait_for(lambda f=floor: stats(s).get("interactions:processed", 0) > f, 60, "progress", steady)
            if c == 0:
                _kill_archive_child(steady)
            victim.signal(signal.SIGKILL)
            victim.proc.wait(5)
            kills += 1
            time.sleep(s.worker.session_timeout_s)  # the steady worker takes every partition over
            victim, victim_s = _worker(s, f"victim-{kills}")
    wait_for(lambda: stats(s).get("interactions:processed", 0) >= len(stream), 180, "catch-up", steady)
    # the last victim has joined (a SIGTERM while it still imports kills it: -15, nothing to drain)
    wait_for(lambda: ready(victim_s), 60, "the last victim joined", victim)
    assert 'streamrec_worker_child_exits_total{child="archive"} 1.0' in _metrics(steady_s)
    assert victim.stop() == 0
    assert steady.stop() == 0

    st = stats(s)
    assert kills == 3
    assert st["interactions:processed"] == len(stream)
    assert st["interactions:duplicates"] == len(stream) - len(unique)
    assert st.get("interactions:replayed", 0) > 0, st  # the kills did make batches be delivered again
    assert st.get("events_dead_lettered", 0) == 0
    ref = reference_state(s, catalog, unique)
    expected = dump(s, ref)
    actual = dump(s, s.redis.key_prefix)
    assert len([k for k in expected if ":dd:" in k]) == len(unique)
    assert_same(actual, expected)
    _assert_offsets_committed(s, topics.interactions)
    assert_feast_matches(s, ref, sorted({e.user_id for e in unique}), [it.item_id for it in catalog])
    _assert_archived(s, catalog, unique)


def _kill_archive_child(worker: ChildProcess) -> None:
    kids = [p for p in psutil.Process(worker.pid).children() if "streams.archive_child" in p.cmdline()]
    assert len(kids) == 1, kids
    kids[0].kill()


def _metrics(s: Settings) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{s.worker.metrics_port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def _assert_archived(s: Settings, catalog: list[ItemUpsert], unique: list[Interaction]) -> None:
    """Every event once (on read: the reader keeps one record per event id), as the worker decoded it,
    with the categories planning saw; the catalogue too."""
    archive, cats = ParquetArchive(s.archive_dir), {it.item_id: it.categories for it in catalog}
    got = {r["event_id"]: r for r in archive.iter_events(INTERACTIONS)}
    assert sorted(got) == sorted(e.event_id for e in unique)
    for e in unique:
        row = {k: v for k, v in got[e.event_id].items() if k != "_offset"}
        assert row == {**json.loads(e.model_dump_json()), "categories": cats[e.item_id]}, e.event_id
    assert sorted(r["item_id"] for r in archive.iter_events(ITEMS)) == sorted(cats)


def _freeze(worker: ChildProcess, seconds: float) -> None:
    """SIGSTOP past the session timeout: the group moves on, then the worker resumes mid-batch."""
    worker.signal(signal.SIGSTOP)
    time.sleep(seconds)
    worker.signal(signal.SIGCONT)


def _assert_offsets_committed(s: Settings, topic: str) -> None:
    consumer = KafkaConsumer(bootstrap_servers=s.kafka.bootstrap_servers, group_id=s.worker.group_id,
                             enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in range(4)]
    ends = consumer.end_offsets(tps)
    committed = {tp: consumer.committed(tp) for tp in tps}
    consumer.close()
    assert all(committed[tp] is not None and committed[tp] >= ends[tp] for tp in tps), (committed, ends)
