"""Admission sheds every feed request on arrival while the event loop runs behind (``LoopLag``: a
ticker's lateness, or how overdue its next tick is) and a feed is in flight, and admits again once the
loop is back on time. The clock is injected: no timed assertion."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from serving_events import click, memory_state
from test_serving_admission_wait import _App, _run

from core.settings import Settings
from funnel.pipeline import Pipeline
from services.api.admission import Admission, LoopLag
from services.api.app import create_app


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _gate(lag: LoopLag, in_flight: int = 1) -> tuple[Admission, _App, list[str]]:
    app, shed = _App(), []
    gate = Admission(app, limit=16, shed=lambda scope, why: (503, [], why.encode()), on_shed=shed.append,
                     behind_s=lag.behind_s, max_behind_s=0.025)
    gate.in_flight = in_flight
    return gate, app, shed


def test_the_lag_is_a_late_tick_or_an_overdue_one():
    clock = _Clock()
    lag = LoopLag(period_s=0.01, clock=clock)
    assert lag.behind_s() == 0.0  # not started
    assert lag.tick() == 0.01 and lag.behind_s() == 0.0
    clock.now += 0.05  # the next tick, due 10 ms after the last, has not run: 40 ms overdue
    assert lag.behind_s() == pytest.approx(0.04)
    lag.tick()  # it runs 40 ms late
    assert lag.behind_s() == pytest.approx(0.04)
    clock.now += 0.011
    lag.tick()  # on time again (1 ms of timer slack)
    assert lag.behind_s() == pytest.approx(0.001)


def test_a_lagging_loop_sheds_at_once_and_recovers_when_the_lag_clears():
    clock = _Clock()
    lag = LoopLag(period_s=0.01, clock=clock)
    gate, app, shed = _gate(lag)
    lag.tick()
    assert _run(gate)[0]["status"] == 200 and shed == []
    clock.now += 0.04  # stalled: the tick is 30 ms overdue
    assert _run(gate)[0]["status"] == 503 and shed == ["loop_lag"]
    lag.tick()  # the late tick runs: still 30 ms behind until the next one
    clock.now += 0.005
    assert [m["body"] for m in _run(gate) if "body" in m] == [b"loop_lag"]
    clock.now += 0.006
    lag.tick()  # back on time
    assert _run(gate)[0]["status"] == 200
    assert shed == ["loop_lag", "loop_lag"] and app.calls == 2 and gate.in_flight == 1


def test_a_lagging_loop_with_no_feed_in_flight_admits():
    clock = _Clock()
    lag = LoopLag(period_s=0.01, clock=clock)
    gate, app, shed = _gate(lag, in_flight=0)
    lag.tick()
    clock.now += 1.0
    assert _run(gate)[0]["status"] == 200 and shed == [] and app.calls == 1


def test_the_ticker_runs_on_the_loop_until_stopped():
    lag = LoopLag(period_s=0.001)

    async def go() -> float:
        lag.start()
        await asyncio.sleep(0)  # the ticker's first tick
        due = lag.due
        lag.stop()
        return due

    assert asyncio.run(go()) < float("inf")
    assert lag.behind_s() == 0.0


def _gate_of(app: Any) -> Admission:
    layer: Any = app.build_middleware_stack()
    while not isinstance(layer, Admission):
        layer = layer.app
    return layer


def test_the_api_ticks_on_its_loop_while_it_serves():
    settings = Settings(api={"max_loop_lag_ms": 25.0})
    state = memory_state(settings, {i: ["c"] for i in "abc"}, [click("u1", "a")])
    app = create_app(settings, Pipeline(settings, state))
    gate = _gate_of(app)
    lag = getattr(gate.behind_s, "__self__", None)
    assert isinstance(lag, LoopLag) and gate.max_behind_s == pytest.approx(0.025)
    with TestClient(app) as client:
        assert lag.due < float("inf")  # started by the lifespan
        assert client.get("/v1/feed/u1").status_code == 200
    assert lag.due == float("inf")  # stopped at shutdown


def test_a_zero_bound_turns_it_off():
    settings = Settings(api={"max_loop_lag_ms": 0.0})
    state = memory_state(settings, {i: ["c"] for i in "abc"}, [click("u1", "a")])
    assert _gate_of(create_app(settings, Pipeline(settings, state))).behind_s is None


def test_a_negative_bound_is_refused_at_start_up():
    with pytest.raises(ValidationError, match="max_loop_lag_ms"):
        Settings(api={"max_loop_lag_ms": -1.0})


def test_each_tick_reports_its_lateness():
    clock, seen = _Clock(), []
    lag = LoopLag(period_s=0.01, clock=clock, on_tick=seen.append)
    lag.due = clock.now + 0.01
    clock.now += 0.03
    lag.tick()  # 20 ms late
    clock.now += 0.01
    lag.tick()  # on time
    assert seen == [pytest.approx(0.02), 0.0]


def test_the_api_exports_its_loop_lag():
    settings = Settings(api={"max_loop_lag_ms": 25.0})
    state = memory_state(settings, {i: ["c"] for i in "abc"}, [click("u1", "a")])
    app = create_app(settings, Pipeline(settings, state))
    lag = getattr(_gate_of(app).behind_s, "__self__", None)
    assert isinstance(lag, LoopLag)
    with TestClient(app) as client:
        assert client.get("/v1/feed/u1").status_code == 200
        text = client.get("http://testserver:8081/metrics").text
    assert "# TYPE streamrec_api_loop_behind_seconds gauge" in text
    count = "streamrec_api_loop_lag_seconds_count"
    ticks = next(line for line in text.splitlines() if line.startswith(count))
    assert float(ticks.rsplit(" ", 1)[1]) >= 1  # the ticker ran while the app served
    lag.late_s = 0.5  # stopped: nothing ticks now; the gauge reads the lag when scraped
    registry = app.state.ctx.metrics.registry
    assert registry.get_sample_value("streamrec_api_loop_behind_seconds") == pytest.approx(0.5)
