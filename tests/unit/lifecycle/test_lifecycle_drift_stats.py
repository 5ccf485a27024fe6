"""Drift statistics, the pure drift decision, the HTML report and the promotion rule."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.settings import DriftSettings
from services.drift import DriftContext, compute_drift, stats
from services.drift.report import Panel, ReportData, render_html
from services.trainer.promotion import decide


def test_psi_and_ks_separate_same_from_shifted() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 5000), rng.normal(0, 1, 5000)
    shifted = rng.normal(1.0, 1, 5000)
    assert stats.psi(a, b) < 0.05 < 0.2 < stats.psi(a, shifted)
    assert stats.ks(a, b) < 0.05 and stats.ks(a, shifted) > 0.3
    assert stats.ks_lower(a, shifted) == 0.0 and stats.ks_lower(shifted, a) > 0.3  # one-sided: drops only


def test_categorical_psi_ctr_drop_and_centroids() -> None:
    assert stats.categorical_psi(["a", "b"] * 50, ["a", "b"] * 50) == 0.0
    assert stats.categorical_psi(["a"] * 90 + ["b"] * 10, ["b"] * 90 + ["a"] * 10) > 1.0
    assert stats.relative_drop(0.2, 0.1) == 0.5 and stats.relative_drop(0.1, 0.2) == 0.0
    assert stats.centroid_shift(np.eye(2)[:1], np.eye(2)[:1]) == 0.0
    assert abs(stats.centroid_shift(np.eye(2)[:1], np.eye(2)[1:]) - 1.0) < 1e-9


def _events(rng: np.random.Generator, cats: list[str], p_click: float, n: int = 3000) -> pd.DataFrame:
    items = rng.choice(cats, n)
    clicked = rng.random(n) < p_click
    rows = []
    for j in range(n):
        rows.append(("e", f"u{j % 50}", items[j], "impression", 1.0, float(j), "mobile", None, None))
        if clicked[j]:
            rows.append(("e", f"u{j % 50}", items[j], "click", 1.0, float(j), "mobile", None, None))
    df = pd.DataFrame(rows, columns=["event_id", "user_id", "item_id", "type", "value", "timestamp", "device",
                                     "feed_id", "position"])
    df["positive"] = df["type"] == "click"
    return df


def test_compute_drift_flags_category_and_ctr_shift_but_not_noise() -> None:
    rng = np.random.default_rng(1)
    ctx = DriftContext(categories={"x1": "x", "x2": "x", "y1": "y", "y2": "y"})
    ref = _events(rng, ["x1", "x2", "y1"], 0.2)
    same = compute_drift(ref, _events(rng, ["x1", "x2", "y1"], 0.2), ctx, DriftSettings())
    assert not same.drifted, same.reasons
    moved = compute_drift(ref, _events(rng, ["y1", "y2"], 0.1), ctx, DriftSettings())
    assert moved.drifted
    assert {r.split(" ")[0] for r in moved.reasons} >= {"psi.clicked_category", "ctr_drop"}


def test_report_is_html_with_inline_svg() -> None:
    html = render_html(ReportData("t", [("psi.x", 0.5, 0.2, True)], ["psi.x = 0.5 > 0.2"],
                                  [Panel("p", [1.0, 2.0], [2.0, 3.0]), Panel("c", {"a": 0.5}, {"b": 1.0})]))
    assert html.count("<svg") == 2 and "DRIFT" in html and "psi.x = 0.5" in html


def test_promotion_rule_uses_the_margin() -> None:
    assert decide("m", 0.30, None, 0.0)[0]
    assert decide("m", 0.30, 0.30, 0.0)[0]
    assert not decide("m", 0.29, 0.30, 0.0)[0]
    assert decide("m", 0.29, 0.30, 0.02)[0]
    assert "not promoted" in decide("m", 0.1, 0.3, 0.02)[1]
