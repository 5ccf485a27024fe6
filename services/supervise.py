"""Supervision behind ``streamrec up``: every child (the local broker and Redis included) that dies is
restarted on the same port, after a delay that doubles with each restart in a row and starts again
from the base once the child has stayed up for a healthy period. A child that keeps dying marks the
stack not ready (logged at error level, and in the status file ``streamrec status`` reads); the
supervisor keeps trying and never exits because of one child.

Time comes from injected clocks, so the policy is tested without sleeping.

Example:
    >>> sup = Supervisor(RestartPolicy(), status_path=None)        # doctest: +SKIP
    >>> sup.add(Component("redis", launch, alive_probe), child)     # doctest: +SKIP
    >>> while True: sup.tick(); time.sleep(0.5)                     # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from core.errors import EXIT_RESTART_REQUESTED
from core.settings import StackSettings
from iokit import ChildProcess, backoff_delay, log_tail, write_json_atomic

log = logging.getLogger("streamrec.stack")

STARTING, RUNNING, BACKOFF, FAILED, STOPPED = "starting", "running", "backoff", "failed", "stopped"
Clock = Callable[[], float]


@dataclass(frozen=True)
class RestartPolicy:
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    healthy_reset_s: float = 120.0
    max_restarts: int = 5
    window_s: float = 900.0
    start_timeout_s: float = 120.0

    @classmethod
    def from_settings(cls, s: StackSettings) -> RestartPolicy:
        return cls(s.restart_backoff_s, s.restart_backoff_max_s, s.healthy_reset_s, s.max_restarts,
                   s.restart_window_s, s.start_timeout_s)

    def delay(self, in_a_row: int) -> float:
        """Wait before the next restart, given the restarts in a row so far."""
        return backoff_delay(in_a_row, self.backoff_s, self.backoff_max_s)


@dataclass
class Component:
    """One supervised child: how to start it on its fixed port, and how to tell it is up and ready."""

    name: str
    launch: Callable[[], ChildProcess]
    alive_probe: Callable[[], bool]
    ready_probe: Callable[[], bool] | None = None
    on_up: Callable[[], None] | None = None  # after each restart has come up (the broker: topics)
    address: str = ""
    kind: str = "process"
    port: int = 0
    child: ChildProcess | None = None
    state: str = STOPPED
    ready: bool = False
    in_a_row: int = 0  # restarts since the last healthy period (the backoff exponent)
    recent: list[float] = field(default_factory=list)  # restart times since the last healthy period
    history: list[dict[str, Any]] = field(default_factory=list)  # every restart, for the status
    started_at: float = 0.0
    up_since: float | None = None
    down_since: float | None = None
    next_start: float = 0.0
    last_exit: int | None = None
    requested: bool = False  # the child asked for its restart (EXIT_RESTART_REQUESTED): not a crash
    on_up_pending: bool = False
    created: float | None = None  # the child's process start time: tells it from a reused pid

    @property
    def restarts(self) -> int:
        return len(self.history)


class Supervisor:
    """Steps every component's state machine on :meth:`tick`; writes ``status_path`` as it goes."""

    def __init__(self, policy: RestartPolicy, status_path: Path | None, clock: Clock = time.monotonic,
                 wall: Clock = time.time, probe_interval_s: float = 2.0,
                 nag_interval_s: float = 30.0) -> None:
        self.policy, self.status_path = policy, status_path
        self.clock, self.wall = clock, wall
        self.probe_interval_s, self.nag_interval_s = probe_interval_s, nag_interval_s
        self.components: dict[str, Component] = {}
        self.extra: dict[str, Any] = {}  # shown in the status file (addresses, data_dir)
        self._last_probe = -1e18
        self._last_nag = -1e18
        self._was_ready: bool | None = None
        self.starting = False  # set by the owner while it brings the stack up: not ready, not nagging

    def add(self, comp: Component, child: ChildProcess, up: bool = True) -> None:
        """Adopt a child started (and, with ``up``, seen listening) by the caller."""
        now = self.clock()
        comp.child, comp.started_at, comp.created = child, now, _create_time(child.pid)
        comp.state, comp.up_since = (RUNNING, now) if up else (STARTING, None)
        comp.ready = up and comp.ready_probe is None  # a process is ready once its /readyz said so
        self.components[comp.name] = comp

    # ---- the state machine ---------------------------------------------------------------------
    def tick(self) -> list[str]:
        """One step for every component; returns the names of those found dead in this step."""
        now = self.clock()
        probe = now - self._last_probe >= self.probe_interval_s
        if probe:
            self._last_probe = now
        died = [c.name for c in list(self.components.values()) if self._step(c, now, probe)]
        self.report(now)
        return died

    def _step(self, c: Component, now: float, probe: bool) -> bool:
        if c.state in (BACKOFF, FAILED):
            if now >= c.next_start:
                self._restart(c, now)
            return False
        if c.state == STOPPED:
            return False
        if c.child is None or not c.child.alive() or self._start_timed_out(c, now):
            self._exited(c, now)
            return True
        self._progress(c, now, probe)
        return False

    def _start_timed_out(self, c: Component, now: float) -> bool:
        if c.state != STARTING or now - c.started_at <= self.policy.start_timeout_s or c.alive_probe():
            return False
        log.error("%s (pid %d) is not listening %.0fs after its restart; killing it", c.name,
                  c.child.pid if c.child else -1, self.policy.start_timeout_s)
        if c.child is not None:
            c.child.stop(grace_s=2.0)
        return True

    def _progress(self, c: Component, now: float, probe: bool) -> None:
        if c.state == STARTING and c.alive_probe():
            c.state, c.up_since = RUNNING, now
            c.on_up_pending = c.on_up is not None
            log.warning("%s is back (pid %d, restart %d in a row)", c.name, c.child.pid if c.child else -1,
                        c.in_a_row)
        if c.on_up_pending:
            self._run_on_up(c)
        if c.state == RUNNING and c.in_a_row and c.up_since is not None \
                and now - c.up_since >= self.policy.healthy_reset_s:
            log.warning("%s has been up %.0fs: restart backoff reset (was %d in a row)", c.name,
                        now - c.up_since, c.in_a_row)
            c.in_a_row, c.recent = 0, []
            if c.history:
                c.history[-1]["reset_at"] = self.wall()
        if probe and c.state == RUNNING:
            c.ready = c.ready_probe() if c.ready_probe is not None else True

    def _run_on_up(self, c: Component) -> None:
        assert c.on_up is not None
        try:
            c.on_up()
            c.on_up_pending = False
        except Exception as exc:  # noqa: BLE001 - logged; tried again on the next tick
            log.error("%s is back but its set-up failed (will retry): %s", c.name, exc)

    def _exited(self, c: Component, now: float) -> None:
        c.last_exit = c.child.returncode if c.child is not None else None
        if c.last_exit == EXIT_RESTART_REQUESTED:  # asked for, not a crash: now, and not counted
            log.warning("%s asked to be restarted (exit %d); restarting it now", c.name, c.last_exit)
            c.requested, c.up_since, c.ready = True, None, False
            self._restart(c, now)
            return
        delay = self.policy.delay(c.in_a_row)
        c.recent = [t for t in c.recent if now - t < self.policy.window_s]
        c.state = FAILED if len(c.recent) >= self.policy.max_restarts else BACKOFF
        c.next_start, c.up_since, c.down_since, c.ready = now + delay, None, self.wall(), False
        pid = c.child.pid if c.child is not None else -1
        tail = log_tail(c.child.log_path) if c.child is not None else ""
        log.error("%s (pid %d) exited with code %s; restarting it in %.1fs (restart %d in a row); "
                  "log: %s\n%s",
                  c.name, pid, c.last_exit, delay, c.in_a_row + 1,
                  c.child.log_path if c.child else None, tail)
        if c.state == FAILED:
            log.error("%s keeps dying (%d restarts in the last %.0fs): the stack is NOT READY; still "
                      "retrying, at most every %.0fs", c.name, len(c.recent), self.policy.window_s,
                      self.policy.backoff_max_s)

    def _restart(self, c: Component, now: float) -> None:
        if not c.requested:
            c.in_a_row += 1
            c.recent.append(now)
        c.requested = False
        c.history.append({"died_at": c.down_since, "restarted_at": self.wall(), "exit": c.last_exit,
                          "in_a_row": c.in_a_row, "delay_s": round(self.policy.delay(c.in_a_row - 1), 3)})
        try:
            c.child = c.launch()
        except Exception as exc:  # noqa: BLE001 - counted as another death, retried with backoff
            log.error("%s could not be started: %s", c.name, exc)
            c.child = None
            self._exited(c, now)
            return
        c.state, c.started_at, c.created = STARTING, now, _create_time(c.child.pid)
        log.error("restarted %s (pid %d, restart %d in a row)", c.name, c.child.pid, c.in_a_row)

    # ---- status --------------------------------------------------------------------------------
    def not_ready(self) -> list[str]:
        """Why the stack is not ready (empty when it is)."""
        why = ["the stack is starting"] if self.starting else []
        for c in self.components.values():
            if c.state == FAILED or len(c.recent) > self.policy.max_restarts:
                why.append(f"{c.name} keeps dying ({len(c.recent)} restarts)")
            elif c.state == BACKOFF:
                why.append(f"{c.name} is down (restart in {max(0.0, c.next_start - self.clock()):.1f}s)")
            elif c.state != RUNNING:
                why.append(f"{c.name} is {c.state}")
            elif not c.ready:
                why.append(f"{c.name} is up but not ready")
        return why

    def status(self) -> dict[str, Any]:
        why = self.not_ready()
        return {"ready": not why, "not_ready": why, "pid": os.getpid(), "updated_at": self.wall(),
                **self.extra, "components": {n: _describe(c) for n, c in self.components.items()}}

    def report(self, now: float) -> None:
        """Write the status file, and log readiness changes (and, while not ready, a periodic error)."""
        status = self.status()
        if self.status_path is not None:
            write_json_atomic(self.status_path, status)
        ready = status["ready"]
        if self.starting:
            return
        if ready and self._was_ready is False:
            log.warning("the stack is ready again")
        elif ready and self._was_ready is None:
            log.info("the stack is ready")
        elif not ready and (self._was_ready or now - self._last_nag >= self.nag_interval_s):
            self._last_nag = now
            log.error("the stack is NOT READY: %s", "; ".join(status["not_ready"]))
        self._was_ready = ready

    def stopped(self) -> None:
        for c in self.components.values():
            c.state, c.ready = STOPPED, False
        if self.status_path is not None:
            write_json_atomic(self.status_path, {**self.status(), "ready": False, "stopped_at": self.wall()})


def _describe(c: Component) -> dict[str, Any]:
    alive = c.child is not None and c.child.alive() if c.state in (STARTING, RUNNING) else False
    return {"kind": c.kind, "state": c.state, "ready": c.ready, "address": c.address, "port": c.port,
            "pid": c.child.pid if alive and c.child else None, "created": c.created if alive else None,
            "restarts": c.restarts,
            "restarts_in_a_row": c.in_a_row, "last_exit": c.last_exit,
            "log": str(c.child.log_path) if c.child and c.child.log_path else None,
            "history": c.history[-20:]}


def _create_time(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def reap_orphans(status: dict[str, Any], grace_s: float = 5.0) -> list[str]:
    """Stop the children that a supervisor which died without stopping them left running (they are in
    its last status with their pid and start time; a reused pid has another start time and is left
    alone). Returns their names. Without this, a second redis-server would share the first one's
    append-only file."""
    comps = status.get("components") if not status.get("stopped_at") else None
    found = []
    for name, c in (comps or {}).items():
        pid, created = c.get("pid"), c.get("created")
        if pid and created and _create_time(int(pid)) == created:
            log.warning("stopping %s (pid %d), left running by a supervisor that died", name, pid)
            _stop_group(int(pid), grace_s)
            found.append(name)
    return found


def _stop_group(pid: int, grace_s: float) -> None:
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).wait(wait_s)
            return
