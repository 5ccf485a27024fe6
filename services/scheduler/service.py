"""The scheduler process: APScheduler interval jobs from ``settings.scheduler``, a run-now trigger,
log-and-continue on failure, health endpoints, graceful SIGTERM."""

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


def intervals(settings: Settings) -> dict[str, float]:
    s = settings.scheduler
    return {"train": s.train_interval_s, "index": s.index_interval_s, "drift": s.drift_interval_s,
            "publish_active": s.publish_active_interval_s}


class SchedulerService:
    """Owns the APScheduler instance and the health server; ``runner`` does the actual work."""

    def __init__(self, settings: Settings, runner: JobRunner,
                 ready_check: Callable[[], None] | None = None, host: str = "0.0.0.0") -> None:
        self.settings, self.runner, self.ready_check = settings, runner, ready_check
        self.scheduler = BackgroundScheduler(timezone=UTC, job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": 300})
        self._running = 0
        self._lock = threading.Lock()
        self.started_at = time.time()
        try:
            self.health = HealthServer(host, settings.scheduler.health_port, self._ready,
                                       routes={"/jobs": self.jobs}, post=self._post,
                                       setting="scheduler.health_port")
        except OSError as exc:
            raise StartupError(f"scheduler.health_port {settings.scheduler.health_port}: {exc}") from exc

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
        log.info("scheduler running; health on port %d; jobs %s", self.health.port, intervals(self.settings))

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
        """``POST /jobs/<name>/run``: 202 when started, 404 for an unknown job or route."""
        parts = path.strip("/").split("/")
        if len(parts) == 3 and parts[0] == "jobs" and parts[2] == "run":
            if self.run_now(parts[1]):
                return 202, {"job": parts[1], "status": "started"}
            return 404, {"error": f"unknown job {parts[1]!r}"}
        return 404, {"error": f"no route {path}"}

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
        return self._running == 0
