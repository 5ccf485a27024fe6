"""With default settings, nothing ``streamrec up`` starts listens beyond this host: every listening
socket of the local broker, the local redis-server, the worker, the API, the publisher and the
scheduler (and of any process they spawn) is on a loopback address."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import psutil
import pytest

from core.settings import load_settings
from services.stack import PROCESSES, Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]


def _bound(pid: int) -> list[tuple[str, int, str]]:
    """(ip, port, kind) of every listening TCP socket and unconnected UDP socket of ``pid``."""
    out = []
    for c in psutil.Process(pid).net_connections(kind="inet"):
        if c.status == psutil.CONN_LISTEN:
            out.append((c.laddr.ip, c.laddr.port, "tcp"))
        elif c.type == 2 and not c.raddr:  # SOCK_DGRAM bound without a peer: it receives from anyone
            out.append((c.laddr.ip, c.laddr.port, "udp"))
    return out


def _family(pid: int) -> list[psutil.Process]:
    proc = psutil.Process(pid)
    return [proc, *proc.children(recursive=True)]


def _is_loopback(ip: str) -> bool:
    return ipaddress.ip_address(ip.split("%")[0]).is_loopback


def test_default_stack_listens_on_loopback_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for key in [k for k in os.environ if k.startswith("STREAMREC_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no streamrec.toml here: the built-in defaults
    settings = load_settings(data_dir=str(tmp_path / "var"))
    assert settings.kafka.bootstrap_servers is None and settings.redis.url is None  # local infra too
    with Stack(settings, ready_timeout_s=240) as stack:
        assert set(stack.children) == {p.name for p in PROCESSES}
        owners = {"kafka/redis": [c.pid for c in stack.infra],
                  **{n: [c.pid] for n, c in stack.children.items()}}
        sockets: dict[str, list[tuple[str, int, str]]] = {}
        for name, pids in owners.items():
            for proc in (p for pid in pids for p in _family(pid)):
                sockets.setdefault(name, []).extend(_bound(proc.pid))
    assert len(owners["kafka/redis"]) == 2
    for name in ("kafka/redis", "worker", "api", "publisher", "eraser"):
        assert sockets.get(name), f"{name}: no listening socket found, so this test would prove nothing"
    assert len([s for s in sockets["scheduler"] if s[2] == "tcp"]) >= 2  # health and admin listeners
    exposed = {name: [s for s in socks if not _is_loopback(s[0])] for name, socks in sockets.items()}
    assert not any(exposed.values()), f"listening beyond loopback: {exposed}"
