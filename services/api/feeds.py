"""The feed route's work, off the event loop: a small pool of threads computes feeds, the loop only
parses, admits (``services.api.admission``) and answers.

A feed request's worker thread first checks it did not wait past ``api.queue_timeout_ms`` since
admission (else it is shed: 503 or a degraded feed, per ``api.overload``), then runs the funnel,
records metrics, queues the impression (``ImpressionLog``: sent to Kafka by a background thread, so
Kafka is never on the request path) and encodes the JSON, all off the loop.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from starlette.types import Scope

from core.events import encode
from funnel.fallback import degraded_feed
from services.api.admission import Answer, Shed, check_start, feed_request, reject
from services.api.metrics import FEED_THREAD

if TYPE_CHECKING:
    from services.api.deps import ApiContext

STORE_FALLBACK = "fallback:store"  # Feed.trigger of the fallback the pipeline serves on StoreUnavailable
SERVICE_WEIGHT = 0.05  # of the latest feed in FeedService.service_s (about the last 20 feeds)


class FeedService:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self.pool = ThreadPoolExecutor(ctx.settings.api.feed_threads, thread_name_prefix=FEED_THREAD)
        api = ctx.settings.api
        self.queue_timeout_s = api.queue_timeout_ms / 1e3
        self.threads = api.feed_threads
        self.service_s = 0.0  # moving mean of a computed feed's wall time (its thread's start to answer)
        self._reject = reject(api.retry_after_s)

    def expected_wait_s(self, in_flight: int) -> float:
        """How long a feed request arriving with ``in_flight`` admitted would wait for a thread: those
        beyond the threads are queued ahead of it, each thread frees every ``service_s`` (``admission``
        sheds it on arrival when this exceeds ``api.queue_timeout_ms``)."""
        ahead = in_flight - self.threads
        return (ahead + 0.5) * self.service_s / self.threads if ahead >= 0 else 0.0

    def compute(self, user_id: str, n: int, context: dict[str, str], admitted_at: float | None) -> Answer:
        """Runs in a feed thread: (status, headers, body) of the feed. Raises ``Overloaded``. Its thread
        CPU goes to ``streamrec_api_feed_cpu_seconds``."""
        cpu0 = time.thread_time()
        check_start(admitted_at, self.queue_timeout_s)
        ctx = self.ctx
        t0 = time.perf_counter()
        result = ctx.pipeline.feed(user_id, n, context)
        elapsed = time.perf_counter() - t0
        metrics = ctx.metrics
        metrics.latency.observe(elapsed)
        metrics.feeds.labels("true" if result.feed.degraded else "false").inc()
        if result.feed.trigger == STORE_FALLBACK:
            metrics.store_unavailable.labels("feed").inc()
        for stage, ms in result.stages_ms.items():
            metrics.stage.labels(stage).observe(ms / 1e3)
        ctx.impressions.log(result.feed, elapsed * 1e3)
        timing = ", ".join(f"{k};dur={v:.3f}" for k, v in result.stages_ms.items())
        rows = "{}/{}".format(*result.feature_rows)
        headers = [(b"server-timing", timing.encode()), (b"x-candidates", str(result.candidates).encode()),
                   (b"x-feature-rows", rows.encode())]
        body = encode(result.feed)
        self.service_s += SERVICE_WEIGHT * (time.perf_counter() - t0 - self.service_s)
        metrics.feed_cpu.observe(time.thread_time() - cpu0)
        return 200, headers, body

    def shed(self, scope: Scope, reason: str) -> Answer:
        """What a shed feed request gets (``api.overload``); never touches a store."""
        if self.ctx.settings.api.overload == "reject":
            return self._reject(scope, reason)
        user_id, n, context = feed_request(scope)
        pipeline = self.ctx.pipeline
        segment = context.get(self.ctx.settings.bandit.segment_key)
        feed = degraded_feed(user_id, min(n or self.ctx.settings.api.default_n, self.ctx.settings.api.max_n),
                             pipeline.cache, pipeline.snapshot, segment, "overload", pipeline.clock())
        return 200, [(b"x-shed", reason.encode())], encode(feed)

    def shed_answer(self) -> Shed:
        return self.shed

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def error_body(detail: str) -> bytes:
    return json.dumps({"detail": detail}).encode()
