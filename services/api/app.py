"""The feed API app factory. ``create_app(settings)`` wires the pipeline, Kafka and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from core.settings import Settings
from core.topics import Topics
from services.api.deps import ApiContext
from services.api.routes import router
from services.pipeline import Pipeline
from services.publisher.kafka_io import ImpressionLog, LazyProducer


def create_app(settings: Settings, pipeline: Pipeline | None = None,
               on_close: Callable[[], None] | None = None) -> FastAPI:
    """``pipeline`` defaults to the real one (Redis state, feature reader, hot-swapped models)."""
    closers: list[Callable[[], None]] = [on_close] if on_close else []
    if pipeline is None:
        from services.pipeline.build import build_pipeline

        pipeline, close = build_pipeline(settings)
        closers.append(close)
    producer = LazyProducer(settings, "api")
    ctx = ApiContext(settings, pipeline, producer,
                     ImpressionLog(producer, Topics(settings.kafka.topic_prefix), "api"))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        producer.start()
        yield
        producer.close()
        for close in closers:
            close()

    app = FastAPI(title="streamrec feed API", version="1", lifespan=lifespan)
    app.state.ctx = ctx
    app.include_router(router)
    return app
