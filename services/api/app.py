"""The feed API app factory. ``create_app(settings)`` wires the pipeline, Kafka and metrics."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from core.settings import Settings, load_settings
from core.topics import Topics
from funnel.pipeline import Pipeline
from services.api.admission import Admission, LoopLag
from services.api.deps import ApiContext
from services.api.limits import BodySizeLimit, validation_handler
from services.api.metrics import WorkerCpu
from services.api.ops import OpsPort
from services.api.routes import router
from services.api.security import Security
from services.api.tenants import BuildPipeline
from services.console.router import router as console_router
from services.metadata.access_store import AccessStore
from services.pipeline.threads import serving_process
from services.publisher.kafka_io import CProducer, ImpressionLog


def create_app(settings: Settings, pipeline: Pipeline | None = None,
               on_close: Callable[[], None] | None = None, tenant_pipelines: BuildPipeline | None = None,
               access: AccessStore | None = None) -> FastAPI:
    """``pipeline`` defaults to the real one (Redis state, feature reader, hot-swapped models), and
    so do other tenants' (``tenant_pipelines``: settings -> (pipeline, close)). ``access``: the key
    store (default: the control database of the settings)."""
    closers: list[Callable[[], None]] = [on_close] if on_close else []
    if pipeline is None:
        from services.pipeline.build import build_pipeline

        pipeline, close = build_pipeline(settings)
        closers.append(close)
    producer = CProducer(settings, "api")  # the process's one producer: ingest writes and impressions
    impressions = ImpressionLog(producer, Topics(settings.kafka.topic_prefix), "api")
    ctx = ApiContext(settings, pipeline, producer, impressions)
    lag = LoopLag(on_tick=ctx.metrics.loop_lag.observe)
    ctx.metrics.loop_behind.set_function(lag.behind_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        producer.start()
        await asyncio.to_thread(security.warm)
        lag.start()
        cpu.loop_ident = threading.get_ident()
        yield
        lag.stop()
        security.close()
        ctx.feeds.close()
        ctx.impressions.close()
        producer.close(settings.kafka.connect_timeout_s)
        for close in closers:
            close()

    app = FastAPI(title="streamrec feed API", version="1", lifespan=lifespan)
    app.state.ctx = ctx
    app.include_router(router)
    app.include_router(console_router)  # /console: the operator console (services.console)
    security = Security(app, settings, ctx, producer, tenant_pipelines, access)
    cpu = WorkerCpu()
    security.registry.register(cpu)
    refused = ctx.metrics.refused.labels
    app.add_exception_handler(RequestValidationError, validation_handler(lambda r: refused(r).inc()))
    app.add_middleware(BodySizeLimit, max_bytes=settings.api.max_body_bytes,  # type: ignore[arg-type]
                       setting="api.max_body_bytes", on_refuse=lambda r: refused(r).inc())
    shed = ctx.metrics.shed.labels
    app.add_middleware(Admission, limit=settings.api.max_in_flight,  # type: ignore[arg-type]
                       shed=ctx.metrics.timed_shed(security.shed), on_shed=lambda r: shed(r).inc(),
                       wait_s=ctx.feeds.expected_wait_s, timeout_s=ctx.feeds.queue_timeout_s,
                       behind_s=lag.behind_s if settings.api.max_loop_lag_ms else None,
                       max_behind_s=settings.api.max_loop_lag_ms / 1e3)
    app.add_middleware(OpsPort, ops_port=settings.api.ops_port, ready=security.ready,  # type: ignore[arg-type]
                       registry=security.registry)
    return app


def create_app_from_settings() -> FastAPI:
    """The app of one API worker process (``uvicorn --factory``; each worker loads the settings)."""
    serving_process()
    return create_app(load_settings())
