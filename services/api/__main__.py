"""``python -m services.api``: the feed API under uvicorn on ``api.host:api.port``.

With ``api.workers`` > 1, uvicorn binds the port once and runs that many worker processes on it, each
building its own app from the same settings (``create_app_from_settings``); the models and indexes
they load are shared through memory-mapped files (``services.pipeline.loaders``). The Kubernetes
Deployment runs this same command with ``STREAMREC_API__WORKERS`` set.

uvicorn handles SIGTERM: it stops accepting, drains in-flight requests, runs the lifespan shutdown
(flushes the Kafka producer) and exits 0.
"""

from __future__ import annotations

# isort: off
import services.pipeline.threads  # noqa: F401 - first: one-thread native pools before numpy loads
# isort: on

import logging
import signal

import uvicorn

from core.errors import StartupError
from core.settings import load_settings
from iokit import free_port, port_is_free
from services.api.app import create_app
from services.pipeline.threads import serving_process


def main() -> None:
    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    port = settings.api.port or free_port(settings.api.host)
    if not port_is_free(port, settings.api.host):
        raise StartupError(f"api.port {port} on {settings.api.host} is already in use")
    workers = settings.api.workers
    logging.getLogger(__name__).info("feed API listening on %s:%s (%d worker process%s)", settings.api.host,
                                     port, workers, "" if workers == 1 else "es")
    opts = {"host": settings.api.host, "port": port, "log_level": settings.log_level.lower(),
            "access_log": False, "timeout_graceful_shutdown": 8}
    # uvicorn drains on SIGTERM, then re-raises it against the handler it found: make that a no-op so
    # a graceful stop exits 0.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    if workers == 1:
        serving_process()
        uvicorn.run(create_app(settings), **opts)  # type: ignore[arg-type]
    else:
        uvicorn.run("services.api.app:create_app_from_settings", factory=True, workers=workers,
                    **opts)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
