"""The scheduler's run-now routes listen on loopback only, even when its health port faces the
network: called from a non-loopback address of this machine they are refused (403 on the health
port, nothing listening on the admin port), while probes still answer there."""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import psutil
import pytest

from core.settings import ConfigError, Settings, load_settings
from services.scheduler.service import SchedulerService


def _external_ipv4() -> str | None:
    """A non-loopback IPv4 address of this machine (None when it has none)."""
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family == socket.AF_INET and not ipaddress.ip_address(addr.address).is_loopback:
                return str(addr.address)
    return None


EXTERNAL = _external_ipv4()
needs_external = pytest.mark.skipif(EXTERNAL is None, reason="this machine has no non-loopback IPv4 "
                                    "address; the refusal path is covered by the loopback tests below")


def _call(url: str, method: str = "GET") -> tuple[int, str]:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - test URL
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class _Runner:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.ran = threading.Event()

    def __call__(self, name: str, trigger: str) -> None:
        self.calls.append((name, trigger))
        self.ran.set()


def _service(host: str) -> tuple[SchedulerService, _Runner]:
    settings = Settings(scheduler={"host": host, "train_interval_s": 3600, "index_interval_s": 3600,
                                   "drift_interval_s": 3600, "publish_active_interval_s": 3600})
    runner = _Runner()
    return SchedulerService(settings, runner), runner


@pytest.fixture
def exposed() -> Iterator[tuple[SchedulerService, _Runner]]:
    service, runner = _service("0.0.0.0")
    service.start()
    yield service, runner
    service.stop(grace_s=1.0)


def _listening(pid: int) -> dict[int, str]:
    return {c.laddr.port: c.laddr.ip for c in psutil.Process(pid).net_connections("inet")
            if c.status == psutil.CONN_LISTEN}


@needs_external
def test_run_now_is_refused_from_another_interface(exposed: tuple[SchedulerService, _Runner]):
    service, runner = exposed
    health, admin = service.health.port, service.admin.port
    assert _call(f"http://{EXTERNAL}:{health}/readyz")[0] == 200  # probes do reach the health port
    code, body = _call(f"http://{EXTERNAL}:{health}/jobs/drift/run", "POST")
    assert code == 403
    assert "scheduler.admin_port" in json.loads(body)["error"]
    with pytest.raises(urllib.error.URLError):  # nothing listens on the admin port off loopback
        _call(f"http://{EXTERNAL}:{admin}/jobs/drift/run", "POST")
    assert runner.calls == []


def test_run_now_works_on_the_loopback_admin_port(exposed: tuple[SchedulerService, _Runner]):
    service, runner = exposed
    assert _call(f"http://127.0.0.1:{service.health.port}/jobs/drift/run", "POST")[0] == 403
    assert runner.calls == []
    assert _call(f"{service.admin_url}/jobs/drift/run", "POST")[0] == 202
    assert runner.ran.wait(10) and runner.calls == [("drift", "manual")]
    assert _call(f"{service.admin_url}/jobs/nope/run", "POST")[0] == 404
    sockets = _listening(psutil.Process().pid)
    assert sockets[service.admin.port] == "127.0.0.1" and sockets[service.health.port] == "0.0.0.0"


@needs_external
def test_default_host_is_loopback_only():
    service, _ = _service(Settings().scheduler.host)
    service.start()
    try:
        assert _call(f"http://127.0.0.1:{service.health.port}/healthz")[0] == 200
        with pytest.raises(urllib.error.URLError):
            _call(f"http://{EXTERNAL}:{service.health.port}/healthz")
    finally:
        service.stop(grace_s=1.0)


@pytest.mark.parametrize(("override", "key"), [
    ({"scheduler": {"host": "every-interface"}}, "scheduler.host"),
    ({"api": {"host": "0.0.0.0.0"}}, "api.host"),
    ({"scheduler": {"health_port": 9200, "admin_port": 9200}}, "scheduler"),
])
def test_bad_bind_settings_fail_naming_the_key(override: dict[str, object], key: str):
    with pytest.raises(ConfigError) as err:
        load_settings(**override)
    assert err.value.keys == [key]
