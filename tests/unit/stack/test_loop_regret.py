"""bench loop's regret against the simulator's oracle: per feed and cumulative, in the order shown,
and drawn in the HTML report."""

from __future__ import annotations

from services.demo.loop_report import charts
from services.demo.loop_results import regret
from services.demo.truth import Moment


def _m(t: float, ours: float, oracle: float) -> Moment:
    return Moment(t=t, ours=ours, random=0.01, oracle=oracle, cold=False)


def test_regret_sums_what_the_oracle_would_have_gained_in_the_order_shown() -> None:
    moments = [_m(3.0, 0.10, 0.30), _m(1.0, 0.05, 0.30), _m(2.0, 0.20, 0.25)]
    out = regret(moments[:1], moments, marks=2)
    assert out["cumulative"] == 0.5
    assert out["per_feed_end"] == 0.2 and out["per_feed_whole_run"] == round(0.5 / 3, 5)
    assert [p["cumulative"] for p in out["curve"]] == [0.25, 0.3, 0.5]  # t = 1, 2, 3
    assert [p["t"] for p in out["curve"]] == [1.0, 2.0, 3.0]


def test_no_feed_no_regret_and_the_report_draws_the_curve() -> None:
    assert regret([], [])["cumulative"] == 0.0 and regret([], [])["curve"] == []
    out = {"timeline": [], "regret_vs_oracle": regret([], [_m(1.0, 0.1, 0.3), _m(2.0, 0.1, 0.3)])}
    assert any("Cumulative regret" in svg for svg in charts(out))
    assert not any("Cumulative regret" in svg for svg in charts({"timeline": []}))
