"""`streamrec import` on the real broker with a real worker: the good rows of a CSV of items, a Parquet
of interactions and a CSV of users are applied by the worker; the bad rows are in each topic's DLQ
in the worker's dead-letter format, with their row number (and the worker dead-letters nothing)."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kafka import KafkaConsumer
from streams_harness import start_worker, stats, stream_settings, wait_for, worker_env  # noqa: F401
from typer.testing import CliRunner

from core.events import DeadLetter
from core.settings import Settings
from core.topics import Topics
from feature_store.online.redis_state import RedisOnlineState, redis_client
from services.cli.main import app

pytestmark = pytest.mark.integration


def _files(tmp: Path, now: float) -> dict[str, Path]:
    items = tmp / "catalog.csv"
    rows = [f"i{k},item {k},jazz|news,{now - 100 + k}" for k in range(5)]
    rows.insert(2, "i-bad,created in the future,jazz,%f" % (now + 86400))  # row 3
    rows.append("i-nan,no date,jazz,")  # row 7: created_at missing
    items.write_text("item_id,title,categories,created_at\n" + "\n".join(rows) + "\n")
    users = tmp / "people.csv"
    users.write_text("user_id,segment,attributes.country\nu0,new,fr\nu1,,de\n,orphan,xx\nu2,vip,\n")
    n = 22
    table = pa.table({
        "user_id": [f"u{k % 3}" for k in range(n)],
        "item_id": [f"i{k % 5}" for k in range(n)],
        "type": ["click" if k != 9 else "teleport" for k in range(n)],  # row 10: unknown type
        "timestamp": [now - n + k if k != 15 else float("nan") for k in range(n)],  # row 16: NaN
        "context.device": ["ios"] * n,
    })
    interactions = tmp / "log.parquet"
    pq.write_table(table, interactions)
    return {"items": items, "users": users, "interactions": interactions}


def _dead_letters(s: Settings, topic: str, n: int) -> list[tuple[bytes | None, DeadLetter]]:
    consumer = KafkaConsumer(topic, bootstrap_servers=s.kafka.bootstrap_servers,
                             auto_offset_reset="earliest", consumer_timeout_ms=5000)
    out = []
    for msg in consumer:
        out.append((msg.key, DeadLetter.model_validate_json(msg.value)))
        if len(out) >= n:
            break
    consumer.close()
    return out


def test_import_applies_good_rows_and_dead_letters_bad_ones_by_row(stream_settings, tmp_path: Path):  # noqa: F811
    s = stream_settings
    topics, now = Topics(s.kafka.topic_prefix), time.time()
    files = _files(tmp_path, now)
    worker = start_worker(s)
    runner = CliRunner()
    try:
        for kind in ("items", "users", "interactions"):
            done = runner.invoke(app, ["import", str(files[kind])], env=worker_env(s))
            assert done.exit_code == 1, done.output  # 1: some rows were dead-lettered
        wait_for(lambda: stats(s).get("items:processed", 0) == 5, 90, "items", worker)
        wait_for(lambda: stats(s).get("users:processed", 0) == 3, 30, "users", worker)
        wait_for(lambda: stats(s).get("interactions:processed", 0) == 20, 30, "interactions", worker)
    finally:
        assert worker.stop() == 0
    assert not {k: v for k, v in stats(s).items() if k.endswith(":dead_lettered") and v}
    state = RedisOnlineState(redis_client(s), s)
    found = state.items([f"i{k}" for k in range(5)] + ["i-bad"])
    assert [it is not None for it in found] == [True] * 5 + [False]
    assert found[0] is not None and found[0].categories == ["jazz", "news"]
    expected = {"items": [(3, "future_created_at", b"i-bad"), (7, "missing_field", b"i-nan")],
                "users": [(3, "missing_field", None)],
                "interactions": [(10, "unknown_type", b"u0"), (16, "non_finite", b"u0")]}
    for kind, want in expected.items():
        letters = _dead_letters(s, topics.dlq(kind), len(want))
        got = sorted((d.offset, d.reason, key) for key, d in letters)
        assert got == want, kind
        for _, d in letters:
            assert d.source_topic == f"file:{files[kind].name}" and d.partition == 0
            assert d.detail.startswith(f"row {d.offset}") and d.original is not None
