"""The scheduler process: health endpoints, the run-now trigger (recorded in the registry),
log-and-continue, and a graceful exit 0 on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from iokit import free_port
from services.metadata import MetadataStore

pytestmark = pytest.mark.integration


def _get(url: str, method: str = "GET") -> tuple[int, str]:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _wait(cond, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_scheduler_process_health_run_now_and_sigterm(tmp_path: Path) -> None:
    port, admin_port = free_port(), free_port()
    env = {**os.environ, "STREAMREC_DATA_DIR": str(tmp_path), "STREAMREC_SCHEDULER__HEALTH_PORT": str(port),
           "STREAMREC_SCHEDULER__ADMIN_PORT": str(admin_port),
           "STREAMREC_SCHEDULER__DRIFT_INTERVAL_S": "3600", "STREAMREC_SCHEDULER__TRAIN_INTERVAL_S": "3600"}
    env.pop("STREAMREC_CONFIG", None)
    proc = subprocess.Popen([sys.executable, "-m", "services.scheduler"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    base, admin = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}"
    try:
        _wait(lambda: _get(f"{base}/readyz")[0] == 200)
        assert _get(f"{base}/healthz") == (200, json.dumps({"status": "ok"}))
        assert _get(f"{base}/jobs/drift/run", "POST")[0] == 403  # run-now: admin port only
        assert _get(f"{admin}/jobs/nope/run", "POST")[0] == 404
        assert _get(f"{admin}/jobs/drift/run", "POST")[0] == 202
        assert _get(f"{admin}/jobs/index/run", "POST")[0] == 202
        meta = MetadataStore(f"sqlite:///{tmp_path / 'metadata.db'}", migrate=False)
        _wait(lambda: {r.job for r in meta.jobs() if r.outcome != "running"} >= {"drift", "index"})
        runs = {r.job: (r.trigger, r.outcome) for r in meta.jobs()}
        assert runs["drift"] == ("manual", "skipped") and runs["index"] == ("manual", "skipped")
        assert "streamrec_scheduler_job_runs_total" in _get(f"{base}/metrics")[1]
        assert _get(f"{admin}/jobs/train/run", "POST")[0] == 202  # no data: skipped, scheduler lives on
        _wait(lambda: any(r.job == "train" and r.outcome != "running" for r in meta.jobs()))
        assert _get(f"{base}/healthz")[0] == 200
        meta.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            code = proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert code == 0, proc.stdout.read().decode() if proc.stdout else ""
