"""`streamrec bench loop` on a small world for a short run: the harness closes the loop through the live
stack (feeds from the topic shown, reactions ingested, the scheduler's runs read back), writes every
key the issue names and a report, and leaves no process behind. Figures are the benchmark's business,
not this test's: it checks the measurement is taken, not what it says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_e2e_demo import _ours

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]


def test_bench_loop_closes_the_loop_and_reports(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    env.update(STREAMREC_DATA_DIR=str(tmp_path / "var"), STREAMREC_API__PORT="0")
    out = tmp_path / "loop.json"
    cmd = [sys.executable, "-m", "services.cli.main", "bench", "loop", "--json", str(out), "--users", "80",
           "--items", "300", "--duration", "75", "--new-items", "30", "--min-new-events", "300",
           "--train-check", "5", "--window", "15", "--final-window", "30", "--hashing-content"]
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert _ours(str(tmp_path)) == []  # no broker, redis or child of this run survives
    assert done.returncode == 0 and out.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    res = json.loads(out.read_text())
    brief = {k: v for k, v in res.items() if k not in ("timeline", "registry")}
    assert res["child_restarts"] == {}, brief
    ctr = res["ctr"]
    assert ctr["feeds_shown"] > 0 and 0 < ctr["random"] < ctr["oracle"], brief  # feeds came back, were shown
    assert res["lift_vs_random"] == pytest.approx(ctr["ours"] / ctr["random"], rel=1e-3)
    for key in ("gap_captured", "cold_user_lift", "new_items_shown_within_60s", "promotions"):
        assert key in res
    assert res["new_items"]["judged"] > 0 and res["new_items"]["upserted"] >= res["new_items"]["judged"]
    assert res["event_to_feed_ms"]["samples"] > 0 and res["cpu"]["bench_cores"] > 0
    assert res["registry"]["train_runs"], "the scheduler never tried to train (min_new_events not reached?)"
    assert [round(r["t"]) for r in res["timeline"]] == [15, 30, 45, 60, 75]
    assert sum(r["n"] for r in res["timeline"]) == res["visits_to_a_feed"]
    report = (tmp_path / "loop.html").read_text()
    assert report.count("<svg") >= 3 and "polyline" in report
