"""``python -m services.privacy``: the eraser of the tenant ``tenancy.tenant`` (see service.py)."""

from __future__ import annotations

import logging
import signal
import threading

from core.settings import load_settings
from services.privacy.service import consume


def main() -> None:
    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    consume(settings, stop)


if __name__ == "__main__":
    main()
