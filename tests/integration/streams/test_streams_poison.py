"""Poison records between valid events, on the real broker: 180 KB of 0x01 bytes (6x once escaped as
JSON), 5 MB of text (over the consumer's 1 MiB per-partition fetch size and the producer's 1 MB
request limit) and a record just under Tansu's maximum (its request parser refuses a records field
over 2^30 bytes). The worker stays up (same pid), dead-letters each of them within the producer's
limit (truncated, with coordinates and key), and applies every valid event exactly as a
reference run without the poison does. When the broker refuses a dead letter for good (a schema
on the DLQ topic), the record is logged with its coordinates, counted, and skipped."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from kafka import KafkaConsumer, KafkaProducer
from streams_harness import (
    assert_same,
    create_topics,
    dump,
    interactions,
    items,
    make_settings,
    reference_state,
    start_worker,
    stats,
    stream_settings,  # noqa: F401 - fixture
    wait_for,
)

from core.events import DeadLetter, Interaction, encode
from core.settings import Settings
from core.topics import Topics
from iokit import ChildProcess, free_port
from iokit.dead_letters import DEFAULT_MAX_REQUEST_BYTES, record_size
from services.localstack import broker_binary, start_broker, wait_listening

pytestmark = pytest.mark.integration
# Tansu 0.6 refuses a produce request whose records field exceeds 2^30 bytes (MESSAGE_MAX_SIZE in
# tansu-sans-io; measured: a 1_073_741_000-byte value is stored, 1_073_741_900 is refused). The
# record batch around one record with a short key costs < 100 bytes.
TANSU_MAX_RECORDS_BYTES = 2**30
JUST_UNDER_MAX = TANSU_MAX_RECORDS_BYTES - 1024
Poison = tuple[bytes, bytes]  # key, value
Sent = tuple[bytes, int, int, int]  # key, partition, offset, size


def text_of(n: int) -> bytes:
    line = b'{"event_id": "lorem", "pad": "ipsum dolor sit amet"}\n'
    return (line * (n // len(line) + 1))[:n]


def test_poison_records_are_dead_lettered_and_the_worker_stays_up(stream_settings) -> None:  # noqa: F811
    poison = [(b"poison-ctl", b"\x01" * 180_000), (b"poison-text", text_of(5 * 1024 * 1024))]
    _run(stream_settings, poison)


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[str]:
    """A broker for this test only: the memory broker would hold a 1 GiB record for the session."""
    bootstrap, child = start_broker(tmp_path / "broker-logs")
    yield bootstrap
    child.stop()


def test_a_record_just_under_the_broker_maximum(tmp_path: Path, own_broker: str, redis_url: str) -> None:
    s = make_settings(tmp_path, own_broker, redis_url)
    create_topics(s)
    _run(s, [(b"poison-max", b"m" * JUST_UNDER_MAX)])


@pytest.fixture
def refusing_broker(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A broker whose schema registry refuses every dead letter on the interactions DLQ (Tansu
    answers INVALID_RECORD): a refusal for good, not an outage. Yields (bootstrap, topic prefix)."""
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / f"{Topics(prefix).dlq('interactions')}.json").write_text(json.dumps(
        {"type": "object", "properties": {"value": {"type": "object", "required": ["never_present"]}}}))
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = (tmp_path / "broker.log").open("ab")
    argv = [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/", "--schema-registry", "file://./schemas"]  # cwd-relative
    proc = subprocess.Popen(argv, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    child = ChildProcess("kafka", proc)
    try:
        wait_listening(child, port, 20)
        yield f"127.0.0.1:{port}", prefix
    finally:
        child.stop()
        log.close()


def test_a_dead_letter_the_broker_refuses_is_logged_counted_and_skipped(
        tmp_path: Path, refusing_broker: tuple[str, str], redis_url: str) -> None:
    bootstrap, prefix = refusing_broker
    s = make_settings(tmp_path, bootstrap, redis_url)
    s = s.model_copy(update={"kafka": s.kafka.model_copy(update={"topic_prefix": prefix})})
    create_topics(s)
    _run(s, [(b"bad-json", b"{not json"), (b"poison-ctl", b"\x01" * 180_000)], refused=True)


def _run(s: Settings, poison: list[Poison], refused: bool = False) -> None:
    topics = Topics(s.kafka.topic_prefix)
    now = time.time()
    catalog = items(20, now)
    good = interactions(300, users=30, n_items=20, now=now)
    prod = KafkaProducer(bootstrap_servers=s.kafka.bootstrap_servers, linger_ms=5, acks="all",
                         max_request_size=8 * 1024 * 1024)
    for it in catalog:
        prod.send(topics.items, key=it.item_id.encode(), value=encode(it))
    prod.flush()
    worker = start_worker(s)
    try:
        wait_for(lambda: stats(s).get("items:processed", 0) == len(catalog), 60, "catalog", worker)
        sent = _send_between(s, prod, good, poison)
        wait_for(lambda: stats(s).get("interactions:processed", 0) >= len(good)
                 and _accounted(s) >= len(good) + len(poison), 300, "every record", worker)
        assert worker.alive(), f"worker exited: see {worker.log_path}"
        delivered = len(poison) - stats(s).get("interactions:skipped", 0)
        letters = _read_dlq(s, topics.dlq("interactions"), delivered)
        metrics = _metrics(s)
        print(f"worker peak RSS: {_peak_rss_mb(worker.pid)} MB", flush=True)
    finally:
        code = worker.stop()
    assert code == 0, f"worker {worker.pid} did not stop cleanly (it restarted?): see {worker.log_path}"
    _check_letters(s, letters, sent, metrics)
    _check_skipped(s, sent if refused else [], worker.log_path)
    _check_state(s, catalog, good)


def _send_between(s: Settings, prod: KafkaProducer, good: list[Interaction],
                  poison: list[Poison]) -> list[Sent]:
    """Valid events, each poison record after its share of them (awaited, for its coordinates)."""
    topics = Topics(s.kafka.topic_prefix)
    share = len(good) // (len(poison) + 1)
    sent = []
    for n, ev in enumerate(good):
        prod.send(topics.interactions, key=ev.user_id.encode(), value=encode(ev))
        if n % share == share - 1 and len(sent) < len(poison):
            prod.flush()
            key, value = poison[len(sent)]
            part, off = _send_poison(s, topics.interactions, key, value, prod)
            sent.append((key, part, off, len(value)))
    prod.flush()
    return sent


def _send_poison(s: Settings, topic: str, key: bytes, value: bytes, prod: KafkaProducer) -> tuple[int, int]:
    if len(value) < 8 * 1024 * 1024:
        md = prod.send(topic, key=key, value=value).get(timeout=60)
        return md.partition, md.offset
    return asyncio.run(_send_huge(s, topic, key, value))


async def _send_huge(s: Settings, topic: str, key: bytes, value: bytes) -> tuple[int, int]:
    """aiokafka for the 1 GiB record (its CRC32C is native)."""
    p = AIOKafkaProducer(bootstrap_servers=s.kafka.bootstrap_servers, max_request_size=2**31 - 1,
                         acks="all", request_timeout_ms=300_000)
    await p.start()
    try:
        md = await p.send_and_wait(topic, key=key, value=value)
        return md.partition, md.offset
    finally:
        await p.stop()


def _accounted(s: Settings) -> int:
    st = stats(s)
    return sum(st.get(f"interactions:{k}", 0) for k in ("processed", "dead_lettered", "skipped"))


def _check_letters(s: Settings, letters: list[tuple[bytes | None, bytes]], sent: list[Sent],
                   metrics: str) -> None:
    st = stats(s)
    skipped = st.get("interactions:skipped", 0)
    assert st.get("interactions:dead_lettered", 0) + skipped == len(sent)
    failed = [line for line in metrics.splitlines()
              if line.startswith('streamrec_worker_dead_letter_failed_total{agent="interactions"')]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in failed) == skipped
    assert f'streamrec_worker_events_total{{agent="interactions",outcome="dead_lettered"}} ' \
           f'{float(len(letters))}' in metrics
    by_coord = {(d.partition, d.offset): (k, d) for k, d in
                ((k, DeadLetter.model_validate_json(v)) for k, v in letters)}
    for key, part, off, size in sent:
        if (part, off) not in by_coord:
            continue  # skipped with the metric, checked above
        kafka_key, d = by_coord[(part, off)]
        assert kafka_key == key and d.key is not None and d.key.raw() == key
        assert d.reason == "oversized" and d.source_topic == Topics(s.kafka.topic_prefix).interactions
        assert d.original is not None and d.original.size == size
        assert d.original.truncated == (size > 3 * DEFAULT_MAX_REQUEST_BYTES // 4)
        assert len(d.original.raw()) > DEFAULT_MAX_REQUEST_BYTES // 2 or not d.original.truncated
    assert all(record_size(k, v) <= DEFAULT_MAX_REQUEST_BYTES for k, v in letters)


def _check_skipped(s: Settings, refused: list[Sent], log_path: Path | None) -> None:
    """Exactly the ``refused`` records were skipped, each logged with its coordinates."""
    assert stats(s).get("interactions:skipped", 0) == len(refused)
    log = log_path.read_text(errors="replace") if log_path else ""
    topic = Topics(s.kafka.topic_prefix).interactions
    for _, part, off, _ in refused:
        assert f"{topic}[{part}]@{off} " in log, "a skipped record is logged with its coordinates"


def _check_state(s: Settings, catalog: list, good: list[Interaction]) -> None:
    assert stats(s)["interactions:processed"] == len(good)
    assert_same(dump(s, s.redis.key_prefix), dump(s, reference_state(s, catalog, good)))


def _read_dlq(s: Settings, topic: str, n: int) -> list[tuple[bytes | None, bytes]]:
    if n == 0:
        return []
    consumer = KafkaConsumer(topic, bootstrap_servers=s.kafka.bootstrap_servers,
                             auto_offset_reset="earliest", consumer_timeout_ms=10_000)
    out = []
    for msg in consumer:
        out.append((msg.key, msg.value))
        if len(out) >= n:
            break
    consumer.close()
    assert len(out) == n, f"{len(out)} dead letters on {topic}, expected {n}"
    return out


def _metrics(s: Settings) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{s.worker.metrics_port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def _peak_rss_mb(pid: int) -> int:
    """For the report only (no assertion): the worker's peak resident memory."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return -1
