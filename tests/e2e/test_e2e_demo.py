"""`streamrec demo` end to end: exits 0, its JSON accounts for every event, no process survives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(320)]


def _ours(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            env = proc.environ()
            cmd = " ".join(proc.info["cmdline"] or [])
        except (psutil.Error, OSError):
            continue
        if marker in env.get("STREAMREC_DATA_DIR", "") or marker in cmd:
            found.append(proc)
    return [p for p in found if p.pid != os.getpid()]


def _first_traceback(log: Path) -> str:
    lines = log.read_text(errors="replace").splitlines()
    start = next((i for i, line in enumerate(lines) if "Traceback" in line), max(0, len(lines) - 30))
    return "\n".join([f"--- {log}", *lines[max(0, start - 1):start + 30]])


def test_demo_runs_accounts_for_every_event_and_leaves_nothing(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    env.update(STREAMREC_DATA_DIR=str(tmp_path / "var"), STREAMREC_API__PORT="0",
               STREAMREC_WORKER__CONTENT_MODEL="false")  # hashing vectors: a faster worker start
    out = tmp_path / "summary.json"
    cmd = [sys.executable, "-m", "services.cli.main", "demo", "--duration", "15", "--rate", "80",
           "--users", "60", "--items", "200", "--malformed", "0.05", "--ready-timeout", "200",
           "--json", str(out)]
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=280)
    assert _ours(str(tmp_path)) == []  # no broker, redis or child process of this run survives
    assert out.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(out.read_text())
    brief = {k: v for k, v in summary.items() if k != "timeline"}
    if summary["child_restarts"]:  # say which child crashed and why, not just that numbers differ
        logs = tmp_path / "var" / "demo" / "stack" / "logs"
        crashes = "\n".join(_first_traceback(logs / f"{n}.log") for n in summary["child_restarts"])
        pytest.fail(f"children crashed during the demo: {summary['child_restarts']}\n{brief}\n{crashes}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert summary["events_produced"] > 0 and summary["feeds_published"] > 0
    assert summary["events_dead_lettered"] > 0
    accounted = summary["events_processed"] + summary["events_dead_lettered"] + summary["events_skipped"]
    assert accounted == summary["events_produced"], brief
    # the worker's own counters agree with its durable marks in Redis and the DLQ topic
    assert summary["worker_metrics_applied"] == summary["events_processed"]
    assert summary["worker_metrics_dead_lettered"] == summary["events_dead_lettered"]
    assert summary["feed_latency_ms_p50"] is not None
    assert summary["feed_latency_ms_p50"] <= summary["feed_latency_ms_p99"]
    # every published feed is scored by the truth: a learning curve, and the end figure explained
    curve = summary["learning_curve"]
    assert curve and sum(p["feeds"] for p in curve) <= summary["feeds_published"]
    assert all(p["personalisation_lift"] > 0 for p in curve) and summary["personalisation_lift"] is not None
    report = (tmp_path / "report.html").read_text()
    assert "<svg" in report and "polyline" in report and "1.0 = random catalogue items" in report
