"""One API process serves every tenant: each request runs on its tenant's :class:`ApiContext` (the
tenant's settings, pipeline, feed threads, impression log and metrics), resolved from its credential.

The default tenant's context is built at start-up; another tenant's on its first request, in the
request's worker thread (its pipeline reads the tenant's Redis keys, Feast project and models). At
most ``tenancy.max_open`` contexts stay open: the least recently used one is closed (after a grace
period, so requests still running on it finish) when another must open. ``/metrics`` shows every
open tenant's metrics with a ``tenant`` label (:class:`TenantMetrics`).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from core.settings import Settings
from core.tenancy import DEFAULT, scoped
from core.topics import Topics
from funnel.pipeline import Pipeline
from services.api.deps import ApiContext
from services.publisher.kafka_io import CProducer, ImpressionLog

log = logging.getLogger(__name__)
BuildPipeline = Callable[[Settings], tuple[Pipeline, Callable[[], None]]]
CLOSE_GRACE_S = 30.0


def real_pipeline(settings: Settings) -> tuple[Pipeline, Callable[[], None]]:
    from services.pipeline.build import build_pipeline

    return build_pipeline(settings)


class TenantContexts:
    """The open tenants' contexts (LRU, bounded); the default tenant's is never closed."""

    def __init__(self, settings: Settings, default: ApiContext, producer: CProducer,
                 build: BuildPipeline = real_pipeline) -> None:
        self.settings, self.default, self.producer, self.build = settings, default, producer, build
        self.max_open = settings.tenancy.max_open
        self._open: OrderedDict[str, tuple[ApiContext, Callable[[], None]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, tenant: str) -> ApiContext:
        if tenant == DEFAULT:
            return self.default
        with self._lock:
            hit = self._open.get(tenant)
            if hit is not None:
                self._open.move_to_end(tenant)
                return hit[0]
            ctx, close = self._make(tenant)
            self._open[tenant] = (ctx, close)
            while len(self._open) > max(1, self.max_open - 1):  # the default tenant counts as one
                name, (old, old_close) = self._open.popitem(last=False)
                log.info("tenant %s closed (tenancy.max_open=%d)", name, self.max_open)
                threading.Timer(CLOSE_GRACE_S, _close, (old, old_close)).start()
            return ctx

    def peek(self, tenant: str) -> ApiContext | None:
        """The tenant's context when open (never builds one; marks it used)."""
        if tenant == DEFAULT:
            return self.default
        with self._lock:
            hit = self._open.get(tenant)
            if hit is None:
                return None
            self._open.move_to_end(tenant)
            return hit[0]

    def _make(self, tenant: str) -> tuple[ApiContext, Callable[[], None]]:
        settings = scoped(self.settings, tenant)
        pipeline, close = self.build(settings)
        topics = Topics(settings.kafka.topic_prefix)  # one C producer per process, the default tenant's
        impressions = ImpressionLog(self.producer, topics, f"api-{tenant}")
        log.info("tenant %s opened", tenant)
        return ApiContext(settings, pipeline, self.producer, impressions), close

    def opened(self) -> list[tuple[str, ApiContext]]:
        with self._lock:
            return [(DEFAULT, self.default)] + [(n, c) for n, (c, _) in self._open.items()]

    def close(self) -> None:
        with self._lock:
            items = list(self._open.values())
            self._open.clear()
        for ctx, close in items:
            _close(ctx, close)


def _close(ctx: ApiContext, close: Callable[[], None]) -> None:
    ctx.feeds.close()
    ctx.impressions.close()
    close()


class TenantMetrics(Collector):
    """Every open tenant's API metrics, each sample labelled with its tenant."""

    def __init__(self, contexts: TenantContexts) -> None:
        self.contexts = contexts

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for tenant, ctx in self.contexts.opened():
            for family in ctx.metrics.registry.collect():
                merged = families.setdefault(family.name, _empty_like(family))
                extra = {} if tenant == DEFAULT else {"tenant": tenant}  # the default's: as before
                merged.samples.extend(
                    Sample(s.name, {**s.labels, **extra}, s.value, s.timestamp, s.exemplar)
                    for s in family.samples)
        yield from families.values()


def _empty_like(f: Metric) -> Metric:
    return Metric(f.name, f.documentation, f.type, f.unit)
