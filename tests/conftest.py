"""Shared fixtures: a real Tansu broker and a real redis-server per test session, on free ports."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings, load_settings
from iokit import ChildProcess
from services.localstack import start_broker, start_redis

ML100K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml-100k"
PG_URL = os.environ.get("STREAMREC_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


@contextmanager
def pg_schema(prefix: str) -> Iterator[str]:
    """A URL of the test PostgreSQL whose search path is a new schema, dropped afterwards."""
    from sqlalchemy import create_engine, text

    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # noqa: BLE001 - the message names what is missing
        admin.dispose()
        pytest.fail(f"PostgreSQL at {PG_URL} is not usable: {exc}")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def wait_until(pred: Callable[[], Any], what: str, timeout_s: float = 30.0, poll_s: float = 0.05) -> None:
    """Poll ``pred`` until it is true; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll_s)


@pytest.fixture(scope="session")
def infra_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("infra")


@pytest.fixture(scope="session")
def kafka_bootstrap(infra_dir: Path) -> Iterator[str]:
    bootstrap, child = start_broker(infra_dir / "logs")
    yield bootstrap
    child.stop()


@pytest.fixture(scope="session")
def redis_server(infra_dir: Path) -> Iterator[tuple[str, ChildProcess]]:
    url, child = start_redis(infra_dir / "redis", infra_dir / "logs")
    yield url, child
    child.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: tuple[str, ChildProcess]) -> str:
    return redis_server[0]


@pytest.fixture
def topic_prefix() -> str:
    """A unique prefix per test, so tests sharing the broker never see each other's topics."""
    return f"t{uuid.uuid4().hex[:8]}-"


@pytest.fixture
def settings(tmp_path: Path, kafka_bootstrap: str, redis_url: str, topic_prefix: str) -> Settings:
    return load_settings(
        data_dir=str(tmp_path),
        kafka={"bootstrap_servers": kafka_bootstrap, "topic_prefix": topic_prefix},
        redis={"url": redis_url, "key_prefix": f"sr:{topic_prefix}"},
        feast={"project": topic_prefix.rstrip("-").replace("-", "_")},
        # admission's 40 ms start deadline is a serving-tail setting: on a busy test machine a
        # lone request can wait that long for a core, and its event loop lag behind (max_loop_lag_ms).
        # Tests of shedding set their own limits.
        api={"queue_timeout_ms": 10_000.0, "max_loop_lag_ms": 0.0},
    )
