"""The restart policy of `streamrec up`, stepped with a fake clock and fake children."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.supervise import FAILED, RUNNING, STARTING, Component, RestartPolicy, Supervisor


class FakeChild:
    pids = iter(range(1000, 10_000))

    def __init__(self) -> None:
        self.pid, self.returncode, self.log_path, self.stopped = next(self.pids), None, None, False

    def alive(self) -> bool:
        return self.returncode is None

    def die(self, code: int = -9) -> None:
        self.returncode = code

    def stop(self, grace_s: float = 0) -> int:
        self.stopped = True
        self.die(-15)
        return -15


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


POLICY = RestartPolicy(backoff_s=1.0, backoff_max_s=8.0, healthy_reset_s=60.0, max_restarts=3, window_s=600.0,
                       start_timeout_s=30.0)


def _sup(tmp_path: Path, listening: list[bool] | None = None, launch_fails: list[bool] | None = None
         ) -> tuple[Supervisor, Clock, list[FakeChild]]:
    clock = Clock()
    sup = Supervisor(POLICY, tmp_path / "stack.json", clock=clock, wall=clock, probe_interval_s=0)
    children = [FakeChild()]
    up = listening if listening is not None else [True]

    def launch() -> FakeChild:
        if launch_fails and launch_fails[0]:
            raise OSError("no such binary")
        children.append(FakeChild())
        return children[-1]

    sup.add(Component("api", launch, alive_probe=lambda: up[0]), children[0])  # type: ignore[arg-type]
    return sup, clock, children


def _advance(sup: Supervisor, clock: Clock, seconds: float, step: float = 0.5) -> None:
    end = clock.t + seconds
    while clock.t < end:
        clock.t += step
        sup.tick()


def _crash_and_restart(sup: Supervisor, clock: Clock, children: list[FakeChild]) -> float:
    """Kill the current child; return how long the supervisor waited before starting the next."""
    n = len(children)
    children[-1].die()
    died = clock.t
    while len(children) == n:
        clock.t += 0.25
        sup.tick()
    sup.tick()  # comes up
    return clock.t - 0.25 - died


def test_backoff_doubles_caps_and_resets_after_a_healthy_period(tmp_path: Path):
    sup, clock, children = _sup(tmp_path)
    waits = [_crash_and_restart(sup, clock, children) for _ in range(5)]
    assert waits == pytest.approx([1.0, 2.0, 4.0, 8.0, 8.0], abs=0.3)
    _advance(sup, clock, 61)  # healthy for healthy_reset_s
    comp = sup.components["api"]
    assert comp.in_a_row == 0 and comp.state == RUNNING and "reset_at" in comp.history[-1]
    assert _crash_and_restart(sup, clock, children) == pytest.approx(1.0, abs=0.3)


def test_too_many_restarts_in_the_window_is_failed_and_not_ready_but_retried(tmp_path: Path):
    sup, clock, children = _sup(tmp_path)
    for _ in range(3):
        _crash_and_restart(sup, clock, children)
    children[-1].die(3)
    sup.tick()
    comp = sup.components["api"]
    assert comp.state == FAILED
    status = json.loads((tmp_path / "stack.json").read_text())
    assert status["ready"] is False and status["not_ready"] == ["api keeps dying (3 restarts)"]
    assert status["components"]["api"]["last_exit"] == 3
    _advance(sup, clock, 9)
    assert len(children) == 5  # it keeps trying
    assert not sup.status()["ready"]  # up again, but still flapping until a healthy period passes
    _advance(sup, clock, 61)
    assert sup.status()["ready"]


def test_a_launch_that_raises_counts_as_a_death(tmp_path: Path):
    fails = [True]
    sup, clock, children = _sup(tmp_path, launch_fails=fails)
    children[0].die()
    _advance(sup, clock, 1 + 2 + 4 + 0.5)  # three failed launches, backing off
    comp = sup.components["api"]
    assert comp.restarts == 3 and comp.child is None and len(children) == 1
    fails[0] = False
    _advance(sup, clock, 8.5)
    assert comp.state == RUNNING and len(children) == 2


def test_a_restarted_child_that_never_listens_is_killed_and_restarted(tmp_path: Path):
    listening = [True]
    sup, clock, children = _sup(tmp_path, listening=listening)
    listening[0] = False
    children[0].die()
    _advance(sup, clock, 1.5)
    assert sup.components["api"].state == STARTING
    _advance(sup, clock, 29)
    assert not children[1].stopped
    _advance(sup, clock, 4)  # past start_timeout_s: killed, restarted 2 s later
    assert children[1].stopped and len(children) == 3


def test_a_requested_restart_is_immediate_and_not_counted_as_a_crash(tmp_path: Path):
    """Exit 75 (the worker's "my topics were re-created, restart me"): restarted at once, no backoff,
    and it never counts toward max_restarts, however often it happens."""
    from core.errors import EXIT_RESTART_REQUESTED

    sup, clock, children = _sup(tmp_path)
    waits = []
    for _ in range(POLICY.max_restarts + 2):
        n = len(children)
        children[-1].die(EXIT_RESTART_REQUESTED)
        died = clock.t
        while len(children) == n:
            clock.t += 0.25
            sup.tick()
        waits.append(clock.t - died)
        sup.tick()
    comp = sup.components["api"]
    assert max(waits) <= 0.25 and comp.in_a_row == 0 and comp.state != FAILED
    assert sup.status()["ready"]
    assert _crash_and_restart(sup, clock, children) == pytest.approx(1.0, abs=0.3)  # a crash still backs off
