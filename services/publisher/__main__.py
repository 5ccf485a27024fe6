"""``python -m services.publisher``: feed-triggers -> debounced per user -> feeds topic.

SIGTERM/SIGINT: stop polling, publish what is pending, flush, commit, exit 0.
"""

from __future__ import annotations

# isort: off
import services.pipeline.threads  # noqa: F401 - first: one-thread native pools before numpy loads
# isort: on

import logging
import signal
import threading
from types import FrameType

from core.errors import StartupError
from core.settings import load_settings
from iokit import retry
from services.health import HealthServer
from services.pipeline.build import build_pipeline
from services.pipeline.threads import serving_process
from services.publisher.kafka_io import CProducer
from services.publisher.service import Publisher

log = logging.getLogger("services.publisher")


def main() -> int:
    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    if not settings.kafka.bootstrap_servers:
        raise StartupError("kafka.bootstrap_servers is not set (streamrec up sets it for children)")
    serving_process()
    models_changed = threading.Event()
    pipeline, close_pipeline = build_pipeline(settings, on_swap=models_changed.set)
    producer = CProducer(settings, "publisher")  # feeds and impressions
    publisher = Publisher(settings, pipeline, producer, models_changed)
    health = HealthServer(settings.publisher.host, settings.publisher.metrics_port, publisher.ready,
                          publisher.metrics.registry, setting="publisher.metrics_port")
    health.start()
    log.info("publisher health on %s:%d", settings.publisher.host, health.port)

    def _stop(signum: int, frame: FrameType | None) -> None:
        publisher.stop_event.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        producer.start()
        retry("kafka (publisher consumer)", publisher.connect, settings.kafka.connect_retries + 1)
        publisher.run()
    finally:
        publisher.close()
        producer.close(settings.kafka.connect_timeout_s)
        close_pipeline()
        health.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
