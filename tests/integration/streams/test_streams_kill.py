"""SIGKILL the worker three times mid-stream: after catch-up every counter, posterior and feature
state in Redis, and every stream feature in Feast online, equals a crash-free recomputation from the
input (0 lost, 0 applied twice), and a final SIGTERM drains and commits every offset."""

from __future__ import annotations

import signal
import time

import pytest
from kafka import KafkaConsumer, TopicPartition
from streams_harness import (
    assert_feast_matches,
    assert_same,
    dump,
    interactions,
    items,
    producer,
    reference_state,
    start_worker,
    stats,
    stream_settings,  # noqa: F401 - fixture
    wait_for,
    with_duplicates,
)

from core.events import encode
from core.topics import Topics
from feature_store.repository import apply

pytestmark = pytest.mark.integration
N_EVENTS, CHUNKS = 20_000, 4


def test_kill_worker_three_times_state_equals_recomputation(stream_settings) -> None:  # noqa: F811
    s = stream_settings.model_copy(update={"worker": stream_settings.worker.model_copy(
        update={"feature_push": True})})
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
    worker = start_worker(s, "worker-0")
    wait_for(lambda: stats(s).get("items:processed", 0) == len(catalog), 60, "catalog", worker)

    size = len(stream) // CHUNKS + 1
    kills = 0
    for c in range(CHUNKS):
        for ev in stream[c * size:(c + 1) * size]:
            prod.send(topics.interactions, key=ev.user_id.encode(), value=encode(ev))
        prod.flush()
        if c < CHUNKS - 1:
            floor = c * size + 300
            wait_for(lambda f=floor: stats(s).get("interactions:processed", 0) > f, 60, "progress", worker)
            worker.signal(signal.SIGKILL)
            worker.proc.wait(5)
            kills += 1
            worker = start_worker(s, f"worker-{kills}")
        print(f"chunk {c} done at {time.time() - now:.1f}s", flush=True)
    wait_for(lambda: stats(s).get("interactions:processed", 0) >= len(stream), 120, "catch-up", worker)
    print(f"caught up at {time.time() - now:.1f}s", flush=True)
    assert worker.stop() == 0

    st = stats(s)
    assert kills == 3
    assert st["interactions:processed"] == len(stream)
    assert st["interactions:duplicates"] == len(stream) - len(unique)
    assert st.get("events_dead_lettered", 0) == 0
    ref = reference_state(s, catalog, unique)
    expected = dump(s, ref)
    actual = dump(s, s.redis.key_prefix)
    assert len([k for k in expected if ":dd:" in k]) == len(unique)
    assert_same(actual, expected)
    _assert_offsets_committed(s, topics.interactions)
    assert_feast_matches(s, ref, sorted({e.user_id for e in unique}), [it.item_id for it in catalog])


def _assert_offsets_committed(s, topic: str) -> None:
    consumer = KafkaConsumer(bootstrap_servers=s.kafka.bootstrap_servers, group_id=s.worker.group_id,
                             enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in range(4)]
    ends = consumer.end_offsets(tps)
    committed = {tp: consumer.committed(tp) for tp in tps}
    consumer.close()
    assert all(committed[tp] is not None and committed[tp] >= ends[tp] for tp in tps), (committed, ends)
