"""Annotated dependencies: handlers declare what they need, the app factory provides it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from core.settings import Settings
from core.topics import Topics
from funnel.pipeline import Pipeline
from services.api.feeds import FeedService
from services.api.metrics import ApiMetrics
from services.publisher.kafka_io import CProducer, ImpressionLog


@dataclass
class ApiContext:
    """Everything the handlers use; built once by the app factory, stored on ``app.state``."""

    settings: Settings
    pipeline: Pipeline
    producer: CProducer
    impressions: ImpressionLog
    metrics: ApiMetrics = field(default_factory=ApiMetrics)
    feeds: FeedService = field(init=False)

    def __post_init__(self) -> None:
        self.feeds = FeedService(self)

    @property
    def topics(self) -> Topics:
        return Topics(self.settings.kafka.topic_prefix)


async def get_context(request: Request) -> ApiContext:
    """The context of the caller's tenant (``services.api.auth`` set ``request.state.principal``;
    the default tenant's for a route without a credential). On the event loop; a tenant's first
    request opens its context in a thread."""
    principal = getattr(request.state, "principal", None)
    if principal is None:
        ctx: ApiContext = request.app.state.ctx
        return ctx
    tenants = request.app.state.tenants
    open_ctx = tenants.peek(principal.tenant)
    if open_ctx is not None:
        return open_ctx  # type: ignore[no-any-return]
    return await asyncio.to_thread(tenants.get, principal.tenant)  # type: ignore[no-any-return]


ContextDep = Annotated[ApiContext, Depends(get_context)]


async def get_pipeline(ctx: ContextDep) -> Pipeline:
    return ctx.pipeline


async def get_settings(ctx: ContextDep) -> Settings:
    return ctx.settings


PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
