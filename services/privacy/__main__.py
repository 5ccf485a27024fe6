"""``python -m services.privacy``: the eraser of the tenant ``tenancy.tenant`` (see service.py)."""

from __future__ import annotations

import logging
import signal
import threading

from core.settings import load_settings
from services.health import HealthServer
from services.privacy.service import CONNECTED, REGISTRY, consume


def main() -> None:
    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    health = HealthServer(settings.eraser.host, settings.eraser.health_port, CONNECTED.is_set, REGISTRY,
                          setting="eraser.health_port")
    health.start()
    logging.getLogger(__name__).info("eraser of tenant %s; health on %s:%d", settings.tenancy.tenant,
                                     settings.eraser.host, health.port)
    try:
        consume(settings, stop)
    finally:
        health.close()


if __name__ == "__main__":
    main()
