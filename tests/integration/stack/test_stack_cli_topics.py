"""`streamrec produce` and `streamrec feeds` against the real broker."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from kafka import KafkaProducer
from typer.testing import CliRunner

from core.events import Feed, FeedItem, encode
from core.settings import Settings
from core.topics import Topics
from services.cli.stack import app
from services.demo.kafka_io import make_reader
from services.stack_setup import ensure_topics

pytestmark = pytest.mark.integration
runner = CliRunner()


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    ensure_topics(settings)
    monkeypatch.setenv("STREAMREC_KAFKA__BOOTSTRAP_SERVERS", str(settings.kafka.bootstrap_servers))
    monkeypatch.setenv("STREAMREC_KAFKA__TOPIC_PREFIX", settings.kafka.topic_prefix)
    monkeypatch.setenv("STREAMREC_DATA_DIR", str(settings.data_dir))
    return settings


def _drain(settings: Settings, topic: str, want: int, timeout_s: float = 15.0) -> list[bytes]:
    consumer = make_reader(settings, topic)
    out: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < want and time.monotonic() < deadline:
        for recs in consumer.poll(timeout_ms=300).values():
            out.extend(r.value for r in recs)
    consumer.close()
    return out


def test_produce_sends_valid_lines_and_reports_invalid(cli_env: Settings, tmp_path: Path):
    f = tmp_path / "events.jsonl"
    good = [{"user_id": f"u{k}", "item_id": "i1", "type": "click"} for k in range(5)]
    f.write_text("\n".join(json.dumps(g) for g in good) + '\nnot json\n{"user_id": "u", "type": "click"}\n')
    result = runner.invoke(app, ["produce", str(f)])
    assert result.exit_code == 1, result.output
    assert "sent 5 interactions" in result.output
    assert "line 6" in result.output and "line 7" in result.output and "item_id" in result.output
    sent = _drain(cli_env, Topics(cli_env.kafka.topic_prefix).interactions, want=5)
    assert sorted(json.loads(v)["user_id"] for v in sent) == [f"u{k}" for k in range(5)]


def test_feeds_prints_the_users_feeds(cli_env: Settings):
    producer = KafkaProducer(bootstrap_servers=cli_env.kafka.bootstrap_servers)
    for user in ("alice", "bob"):
        feed = Feed(feed_id=f"f-{user}", user_id=user, version=1, generated_at=time.time(),
                    items=[FeedItem(item_id="i1", rank=0, score=1.0, source="popular")])
        producer.send(Topics(cli_env.kafka.topic_prefix).feeds, encode(feed), key=user.encode())
    producer.flush(10)
    producer.close()
    result = runner.invoke(app, ["feeds", "--user", "alice", "--idle", "2"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [f["feed_id"] for f in lines] == ["f-alice"]


def test_produce_to_unreachable_broker_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    monkeypatch.setenv("STREAMREC_KAFKA__BOOTSTRAP_SERVERS", f"127.0.0.1:{dead}")
    monkeypatch.setenv("STREAMREC_KAFKA__CONNECT_TIMEOUT_S", "1")
    f = tmp_path / "e.jsonl"
    f.write_text('{"user_id": "u1", "item_id": "i1", "type": "click"}\n')
    t0 = time.monotonic()
    result = runner.invoke(app, ["produce", str(f)])
    assert result.exit_code == 1 and "unreachable" in result.output and f"127.0.0.1:{dead}" in result.output
    assert time.monotonic() - t0 < 15
