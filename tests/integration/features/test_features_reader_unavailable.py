"""The fast reader fails fast and typed when Redis is down or stalls, so serving can degrade."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from core.errors import StoreUnavailable
from core.settings import Settings, load_settings
from feature_store.reader import FastFeatureReader
from feature_store.redis_pipe import RedisPipe, pack
from feature_store.repository import apply, teardown
from iokit import free_port

pytestmark = pytest.mark.integration
BOUND_S = 3.0  # connect/socket timeouts are 0.2 s below; generous for a loaded CI box


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[tuple[Settings, object]]:
    project = f"f{uuid.uuid4().hex[:10]}"
    settings = load_settings(data_dir=str(tmp_path_factory.mktemp("unavail")), redis={"url": redis_url},
                             feast={"project": project})
    store = apply(settings)
    yield settings, store
    teardown(store)


def _pointing_at(settings: Settings, url: str) -> Settings:
    redis = settings.redis.model_copy(update={"url": url, "socket_timeout_s": 0.2, "connect_timeout_s": 0.2})
    return settings.model_copy(update={"redis": redis})


def _assert_fails_fast(reader: FastFeatureReader) -> None:
    for call in (lambda: reader.user_features("u1"), lambda: reader.item_features(["i1", "i2"])):
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailable):
            call()
        assert time.monotonic() - t0 < BOUND_S


def test_connection_refused_raises_store_unavailable(live, tmp_path: Path):
    settings, store = live
    dead = _pointing_at(settings, f"redis://127.0.0.1:{free_port()}/0")
    _assert_fails_fast(FastFeatureReader.from_settings(dead, store))


def test_stalled_server_raises_store_unavailable(live):
    settings, store = live
    with socket.socket() as sink:  # accepts TCP connections (backlog) and never answers
        sink.bind(("127.0.0.1", 0))
        sink.listen(16)
        port = sink.getsockname()[1]
        _assert_fails_fast(FastFeatureReader.from_settings(_pointing_at(settings, f"redis://127.0.0.1:{port}/0"),
                                                           store))


def test_live_reader_returns_none_for_unknown_entities(live):
    settings, store = live
    reader = FastFeatureReader.from_settings(settings, store)
    assert reader.user_features("nobody")["recent_items"] is None


def test_pipe_survives_server_side_disconnect_and_selects_db(redis_url: str):
    key = f"sr:pipe:{uuid.uuid4().hex}".encode()
    admin = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/2")
    admin.set(key, b"v")
    pipe = RedisPipe(redis_url.rsplit("/", 1)[0] + "/2", 0.5, 0.5)
    assert pipe.execute(pack(b"GET", key) + pack(b"PING"), 2) == [b"v", b"PONG"]
    admin.client_kill_filter(_type="normal", skipme=True)  # the server drops our kept-alive socket
    assert pipe.execute(pack(b"GET", key), 1) == [b"v"]
    admin.delete(key)
