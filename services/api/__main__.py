"""``python -m services.api``: the feed API under uvicorn on ``api.host:api.port``.

uvicorn handles SIGTERM: it stops accepting, drains in-flight requests, runs the lifespan shutdown
(flushes the Kafka producer) and exits 0.
"""

from __future__ import annotations

import logging
import signal

import uvicorn

from core.errors import StartupError
from core.settings import load_settings
from iokit import free_port, port_is_free
from services.api.app import create_app


def main() -> None:
    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    port = settings.api.port or free_port(settings.api.host)
    if not port_is_free(port, settings.api.host):
        raise StartupError(f"api.port {port} on {settings.api.host} is already in use")
    logging.getLogger(__name__).info("feed API listening on %s:%s", settings.api.host, port)
    app = create_app(settings)
    # uvicorn drains on SIGTERM, then re-raises it against the handler it found: make that a no-op so
    # a graceful stop exits 0.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    uvicorn.run(app, host=settings.api.host, port=port, log_level=settings.log_level.lower(),
                access_log=False, timeout_graceful_shutdown=8)


if __name__ == "__main__":
    main()
