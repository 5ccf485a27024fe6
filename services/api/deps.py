"""Annotated dependencies: handlers declare what they need, the app factory provides it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from core.settings import Settings
from core.topics import Topics
from funnel.pipeline import Pipeline
from services.api.feeds import FeedService
from services.api.metrics import ApiMetrics
from services.publisher.kafka_io import ImpressionLog, LazyProducer


@dataclass
class ApiContext:
    """Everything the handlers use; built once by the app factory, stored on ``app.state``."""

    settings: Settings
    pipeline: Pipeline
    producer: LazyProducer
    impressions: ImpressionLog
    metrics: ApiMetrics = field(default_factory=ApiMetrics)
    feeds: FeedService = field(init=False)

    def __post_init__(self) -> None:
        self.feeds = FeedService(self)

    @property
    def topics(self) -> Topics:
        return Topics(self.settings.kafka.topic_prefix)


def get_context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


ContextDep = Annotated[ApiContext, Depends(get_context)]


def get_pipeline(ctx: ContextDep) -> Pipeline:
    return ctx.pipeline


def get_settings(ctx: ContextDep) -> Settings:
    return ctx.settings


PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
