"""Ports and probes on this host: a free port, whether a port is free, and TCP/HTTP reachability."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request

from core.errors import StartupError

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A port the OS says is free right now on ``host`` (it may be taken before you bind it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True if ``port`` can be bound on ``host`` now (a listener in TIME_WAIT does not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def choose_port(*preferred: int, host: str = LOOPBACK) -> int:
    """The first non-zero ``preferred`` port that is free, else any free port."""
    for port in preferred:
        if port and port_is_free(port, host):
            return port
    return free_port(host)


def tcp_open(host: str, port: int, timeout_s: float = 0.2) -> bool:
    """True if a TCP connection to ``host:port`` succeeds within ``timeout_s``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_for_tcp(host: str, port: int, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Block until ``host:port`` accepts; StartupError if ``proc`` exits first or on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StartupError(f"process {proc.args!r} exited with {proc.returncode} before listening")
        if tcp_open(host, port):
            return
        time.sleep(0.05)
    raise StartupError(f"nothing listening on {host}:{port} after {timeout_s:.0f}s")


def http_ok(url: str, timeout_s: float = 1.0) -> bool:
    """True if GET ``url`` answers 2xx within ``timeout_s``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - caller's URL
            return 200 <= int(resp.status) < 300
    except (OSError, ValueError):
        return False
