"""``python -m services.scheduler``: the lifecycle scheduler process (see services.scheduler.service)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from types import FrameType

from core.settings import ConfigError, load_settings
from services.scheduler.jobs import Lifecycle, interactions_applied
from services.scheduler.service import SchedulerService

log = logging.getLogger("services.scheduler")


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    lifecycle = Lifecycle(settings, events=interactions_applied(settings))
    service = SchedulerService(settings, lifecycle.run, ready_check=lifecycle.meta.ping)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: shutting down", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    service.start()
    print(f"scheduler health on {settings.scheduler.host}:{service.health.port}; "
          f"run-now on {service.admin_url}/jobs/<name>/run (loopback only)", flush=True)
    stop.wait()
    if not service.stop(grace_s=8.0):
        lifecycle.interrupt_running(service.started_at, "interrupted by shutdown")
        log.warning("jobs still running at shutdown were recorded as interrupted")
        logging.shutdown()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
