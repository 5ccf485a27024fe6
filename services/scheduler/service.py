"""The scheduler process: APScheduler interval jobs from ``settings.scheduler``, a run-now trigger,
log-and-continue on failure, health endpoints, graceful SIGTERM.

Two listeners. The health port (``scheduler.host:scheduler.health_port``) serves ``GET /healthz``,
``/readyz``, ``/metrics`` and ``/jobs``, and may face the network for probes; it refuses run-now with
403. Run-now (``POST /jobs/<name>/run``) starts work, so until admin authentication exists it is served
only on ``127.0.0.1:scheduler.admin_port``, a separate listener no setting can open to other hosts.
A socket bound to loopback cannot be reached from another host, whatever sits in front of it; a check
of the client address could be (a local proxy or a service-mesh sidecar connects from 127.0.0.x).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import Counter, Gauge

from core.errors import StartupError
from core.settings import Settings
from services.health import HealthServer
from services.scheduler.jobs import JOB_NAMES

log = logging.getLogger(__name__)
JOB_RUNS = Counter("streamrec_scheduler_job_runs", "Lifecycle job runs", ["job", "outcome"])
JOB_RUNNING = Gauge("streamrec_scheduler_jobs_running", "Lifecycle jobs running now")

JobRunner = Callable[[str, str], Any]  # (job name, trigger)
ADMIN_HOST = "127.0.0.1"  # the run-now routes' only interface until admin authentication exists


def intervals(settings: Settings) -> dict[str, float]:
    s = settings.scheduler
    return {"train": s.train_interval_s, "train_check": s.train_check_interval_s,
            "index": s.index_interval_s, "drift": s.drift_interval_s,
            "publish_active": s.publish_active_interval_s}


class SchedulerService:
    """Owns the APScheduler instance and the health server; ``runner`` does the actual work."""

    def __init__(self, settings: Settings, runner: JobRunner,
                 ready_check: Callable[[], None] | None = None) -> None:
        self.settings, self.runner, self.ready_check = settings, runner, ready_check
        self.scheduler = BackgroundScheduler(timezone=UTC, job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": 300})
        self._running = 0
        self._lock = threading.Lock()
        self.started_at = time.time()
        s = settings.scheduler
        self.admin = self._listener(ADMIN_HOST, s.admin_port, "scheduler.admin_port", self._post)
        try:
            self.health = self._listener(s.host, s.health_port, "scheduler.health_port", self._refuse)
        except StartupError:
            self.admin.close()
            raise

    def _listener(self, host: str, port: int, setting: str, post: Callable[[str], tuple[int, Any]]
                  ) -> HealthServer:
        try:
            return HealthServer(host, port, self._ready, routes={"/jobs": self.jobs}, post=post,
                                setting=setting)
        except OSError as exc:
            raise StartupError(f"{setting} {port} on {host}: {exc}") from exc

    @property
    def admin_url(self) -> str:
        return f"http://{ADMIN_HOST}:{self.admin.port}"

    def _safe(self, name: str, trigger: str) -> None:
        """Log-and-continue: a failing job never stops the scheduler (the registry has the error)."""
        with self._lock:
            self._running += 1
        JOB_RUNNING.inc()
        try:
            self.runner(name, trigger)
            JOB_RUNS.labels(name, "ok").inc()
        except Exception:
            JOB_RUNS.labels(name, "error").inc()
            log.exception("job %s (%s) failed; continuing", name, trigger)
        finally:
            JOB_RUNNING.dec()
            with self._lock:
                self._running -= 1

    def start(self) -> None:
        for name, every in intervals(self.settings).items():
            self.scheduler.add_job(self._safe, "interval", seconds=every, args=[name, "schedule"], id=name,
                                   name=name)
        self.scheduler.start()
        self.health.start()
        self.admin.start()
        log.info("scheduler running; health on %s:%d; run-now on %s/jobs/<name>/run; jobs %s",
                 self.settings.scheduler.host, self.health.port, self.admin_url, intervals(self.settings))

    def run_now(self, name: str, trigger: str = "manual") -> bool:
        if name not in JOB_NAMES:
            return False
        self.scheduler.add_job(self._safe, "date", run_date=datetime.now(UTC), args=[name, trigger],
                               id=f"{name}-now-{uuid.uuid4().hex[:8]}", name=f"{name} (run now)")
        return True

    def jobs(self) -> list[dict[str, Any]]:
        return [{"id": j.id, "name": j.name, "next_run_time": j.next_run_time}
                for j in self.scheduler.get_jobs()]

    def _post(self, path: str) -> tuple[int, Any]:
        """``POST /jobs/<name>/run`` (admin listener): 202 when started, 404 for an unknown job or route."""
        name = _run_route(path)
        if name is None:
            return 404, {"error": f"no route {path}"}
        if self.run_now(name):
            return 202, {"job": name, "status": "started"}
        return 404, {"error": f"unknown job {name!r}; known: {', '.join(JOB_NAMES)}"}

    def _refuse(self, path: str) -> tuple[int, Any]:
        """POST on the health port: run-now is not served here (it may face the network)."""
        if _run_route(path) is None:
            return 404, {"error": f"no route {path}"}
        return 403, {"error": "run-now is not served on the health port: it needs admin "
                              "authentication, which does not exist yet, so it listens on loopback only "
                              f"(POST {self.admin_url}{path}, port setting scheduler.admin_port)"}

    def _ready(self) -> tuple[bool, str]:
        if not self.scheduler.running:
            return False, "scheduler not running"
        try:
            if self.ready_check is not None:
                self.ready_check()
        except Exception as exc:
            return False, str(exc)
        return True, "ok"

    @property
    def running_jobs(self) -> int:
        return self._running

    def stop(self, grace_s: float = 8.0) -> bool:
        """Stop scheduling, wait up to ``grace_s`` for running jobs; True when they all finished."""
        self.scheduler.shutdown(wait=False)
        deadline = time.monotonic() + grace_s
        while self._running and time.monotonic() < deadline:
            time.sleep(0.05)
        self.health.close()
        self.admin.close()
        return self._running == 0


def _run_route(path: str) -> str | None:
    """The job name of ``/jobs/<name>/run``, else None."""
    parts = path.strip("/").split("/")
    return parts[1] if len(parts) == 3 and parts[0] == "jobs" and parts[2] == "run" else None
