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
import os
import signal

import uvicorn
from uvicorn.supervisors import Multiprocess

from core.errors import StartupError
from core.settings import load_settings
from iokit import free_port, port_is_free
from services.api.app import create_app
from services.api.ops import bind_ops_socket
from services.pipeline.threads import serving_process


def main() -> None:
    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    port = settings.api.port or free_port(settings.api.host)
    if not port_is_free(port, settings.api.host):
        raise StartupError(f"api.port {port} on {settings.api.host} is already in use")
    ops_sock = bind_ops_socket(settings.api.host, settings.api.ops_port)
    ops_port = ops_sock.getsockname()[1]
    os.environ["STREAMREC_API__OPS_PORT"] = str(ops_port)  # the worker processes' settings
    settings = settings.model_copy(update={"api": settings.api.model_copy(update={"ops_port": ops_port})})
    workers = settings.api.workers
    logging.getLogger(__name__).info("feed API listening on %s:%s, health and metrics on port %d (%d worker "
                                     "process%s)", settings.api.host, port, ops_port, workers,
                                     "" if workers == 1 else "es")
    opts = {"host": settings.api.host, "port": port, "log_level": settings.log_level.lower(),
            "access_log": False, "timeout_graceful_shutdown": 8}
    # uvicorn drains on SIGTERM, then re-raises it against the handler it found: make that a no-op so
    # a graceful stop exits 0.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    # Two listening sockets, one app: services.api.ops answers the ops port's requests.
    if workers == 1:
        serving_process()
        config = uvicorn.Config(create_app(settings), **opts)  # type: ignore[arg-type]
        uvicorn.Server(config).run(sockets=[config.bind_socket(), ops_sock])
    else:
        config = uvicorn.Config("services.api.app:create_app_from_settings", factory=True, workers=workers,
                                **opts)  # type: ignore[arg-type]
        Multiprocess(config, sockets=[config.bind_socket(), ops_sock]).run()


if __name__ == "__main__":
    main()
