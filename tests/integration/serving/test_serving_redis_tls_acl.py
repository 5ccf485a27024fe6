"""Redis with an ACL user over TLS, for real: the test makes a CA and a server certificate, starts the
machine's ``redis-server`` with a TLS port only (no plain port), the default user off and one user
``app`` allowed the ``sr:*`` keys. Every Redis client of streamrec connects with the settings alone
(``redis.url`` rediss://, ``redis.username``, the password from the environment or a file,
``redis.tls_ca_file``): redis-py (online state, rate limiter), the serving read path's RedisPipe and
async RESP client, and Feast's connection string. Without the password, with another CA, or over plain
TCP the connection is refused; the ACL confines the user to its keys; and a password in the settings
file is refused naming the setting."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from core.settings import ConfigError, Settings, load_settings
from feature_store.config import redis_connection_string
from feature_store.online.redis_state import redis_client
from feature_store.online.resp import command, connect
from feature_store.redis_pipe import RedisPipe, pack
from iokit import free_port
from tests.pki import make_pki

pytestmark = pytest.mark.integration
PASSWORD = "t0p-s3cret-for-the-test"
SERVER = shutil.which("redis-server")


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, dict[str, Path], Path]]:
    if SERVER is None:
        pytest.skip("no redis-server on this machine")
    d = tmp_path_factory.mktemp("redis-tls")
    pki, stranger = make_pki(d, "test"), make_pki(d, "stranger")
    port = free_port()
    argv = [SERVER, "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(pki["cert"]),
            "--tls-key-file", str(pki["key"]), "--tls-ca-cert-file", str(pki["ca"]),
            "--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", str(d),
            "--user", "default", "off",
            "--user", "app", "on", f">{PASSWORD}", "~sr:*", "+@all", "-@dangerous", "+info", "+client"]
    proc = subprocess.Popen(argv, stdout=(d / "redis.log").open("w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while b"Ready to accept" not in (d / "redis.log").read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server with TLS did not start: {(d / 'redis.log').read_text()[-2000:]}")
            time.sleep(0.05)
        yield port, pki, stranger["ca"]
    finally:
        proc.terminate()
        proc.wait(10)


def _settings(port: int, ca: Path, **redis_over: object) -> Settings:
    return Settings(redis={"url": f"rediss://127.0.0.1:{port}/0", "username": "app", "tls_ca_file": str(ca),
                           **redis_over})


def test_every_client_connects_with_the_acl_user_over_tls(tls_redis, monkeypatch: pytest.MonkeyPatch):
    port, pki, _ = tls_redis
    monkeypatch.setenv("STREAMREC_REDIS__PASSWORD", PASSWORD)
    s = load_settings(redis={"url": f"rediss://127.0.0.1:{port}/0", "username": "app",
                             "tls_ca_file": str(pki["ca"])})
    assert s.redis.password is not None and PASSWORD not in repr(s.redis)
    r = redis_client(s)
    assert r.ping() and r.set("sr:tls:k", "v") and r.get("sr:tls:k") == b"v"
    assert r.connection_pool.connection_kwargs["username"] == "app"
    pipe = RedisPipe(s.redis.url or "", 2.0, 2.0)
    assert pipe.execute(pack(b"PING") + pack(b"GET", b"sr:tls:k"), 2) == [b"PONG", b"v"]
    pipe.close()

    async def resp() -> list[object]:
        target = connect(s.redis.url or "", 2.0, 2.0)
        try:
            return await target.execute([command("sr:tls:k", "GET", "sr:tls:k")])
        finally:
            await target.close()

    assert asyncio.run(resp()) == [b"v"]
    feast = redis_connection_string(s.redis.url or "", 1.0, 1.0)
    assert "ssl=true" in feast and f"ssl_ca_certs={pki['ca'].resolve()}" in feast and "username=app" in feast


def test_the_password_may_come_from_a_file(tls_redis, tmp_path: Path):
    port, pki, _ = tls_redis
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    assert redis_client(_settings(port, pki["ca"], password_file=str(tmp_path / "pw"))).ping()


def test_the_acl_confines_the_user_to_its_keys(tls_redis):
    port, pki, _ = tls_redis
    r = redis_client(_settings(port, pki["ca"], password=PASSWORD))
    with pytest.raises(redis.exceptions.NoPermissionError):
        r.set("other-app:k", "v")
    with pytest.raises(redis.exceptions.NoPermissionError):
        r.flushall()


def test_without_the_password_or_with_another_ca_or_in_plain_tcp_it_is_refused(tls_redis):
    port, pki, stranger_ca = tls_redis
    with pytest.raises(ValueError, match="redis.username without a password"):
        _settings(port, pki["ca"])
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis_client(_settings(port, pki["ca"], password="wrong-password")).ping()
    with pytest.raises(redis.exceptions.ConnectionError, match="(?i)certificate"):
        redis_client(_settings(port, stranger_ca, password=PASSWORD)).ping()
    plain = Settings(redis={"url": f"redis://127.0.0.1:{port}/0", "username": "app", "password": PASSWORD})
    with pytest.raises(redis.exceptions.ConnectionError):
        redis_client(plain).ping()


def test_a_password_in_the_settings_file_is_refused(tmp_path: Path):
    (tmp_path / "s.toml").write_text('[redis]\nurl = "rediss://app:hunter2@redis:6380/0"\n')
    with pytest.raises(ConfigError, match="redis.url") as err:
        load_settings(tmp_path / "s.toml")
    assert "STREAMREC_REDIS__URL" in str(err.value) and "hunter2" not in str(err.value)
    (tmp_path / "s.toml").write_text('[kafka]\nsasl_password = "hunter2"\n')
    with pytest.raises(ConfigError, match="kafka.sasl_password"):
        load_settings(tmp_path / "s.toml")
