"""Handlers: short, transport only. The funnel lives in services.pipeline."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, Query, Request, Response
from kafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core.events import EventError, Feed, Interaction, check_skew, encode
from services.api.deps import ContextDep, PipelineDep, SettingsDep
from services.api.similar import SimilarResponse, similar_items

router = APIRouter()
UserId = Annotated[str, Path(min_length=1, max_length=256)]
RESERVED = frozenset({"n"})
STORE_FALLBACK = "fallback:store"  # Feed.trigger of the fallback the pipeline serves on StoreUnavailable


@router.get("/v1/feed/{user_id}", response_model=Feed, tags=["feed"])
async def get_feed(user_id: UserId, request: Request, ctx: ContextDep,
                   n: Annotated[int | None, Query(ge=1, description="feed size (<= api.max_n)")] = None,
                   ) -> Response:
    """The user's feed. Extra query parameters are request context (e.g. ``?device=mobile``).

    Runs on the event loop on purpose: the pipeline is a few ms of CPU plus sub-ms Redis calls with
    bounded timeouts, and serial execution beats a thread pool fighting over the GIL on 2 cores."""
    if n is not None and n > ctx.settings.api.max_n:
        raise HTTPException(422, f"n={n} exceeds api.max_n={ctx.settings.api.max_n}")
    context = {k: v for k, v in request.query_params.items() if k not in RESERVED}
    t0 = time.perf_counter()
    result = ctx.pipeline.feed(user_id, n or ctx.settings.api.default_n, context)
    ctx.metrics.latency.observe(time.perf_counter() - t0)
    ctx.metrics.feeds.labels(str(result.feed.degraded).lower()).inc()
    if result.feed.trigger == STORE_FALLBACK:
        ctx.metrics.store_unavailable.labels("feed").inc()
    for stage, ms in result.stages_ms.items():
        ctx.metrics.stage.labels(stage).observe(ms / 1e3)
    ctx.impressions.log(result.feed)
    timing = ", ".join(f"{k};dur={v:.3f}" for k, v in result.stages_ms.items())
    return Response(encode(result.feed), media_type="application/json",
                    headers={"Server-Timing": timing, "X-Candidates": str(result.candidates)})


@router.post("/v1/events", status_code=202, tags=["events"])
def post_events(events: Annotated[Interaction | list[Interaction], Body()],
                ctx: ContextDep) -> dict[str, int]:
    """Validates interactions (422 with the reason) and writes them to the interactions topic."""
    batch = events if isinstance(events, list) else [events]
    now, w = time.time(), ctx.settings.worker
    for k, ev in enumerate(batch):
        try:
            check_skew(ev.timestamp, now, w.max_future_skew_s, w.max_past_skew_s)
        except EventError as exc:
            ctx.metrics.events.labels("rejected").inc()
            raise HTTPException(422, {"index": k, "reason": exc.reason, "detail": exc.detail}) from None
    producer = ctx.producer.get()
    if producer is None:
        raise HTTPException(503, "kafka producer not connected yet; retry")
    topic = ctx.topics.interactions
    try:
        futures = [producer.send(topic, key=ev.user_id.encode(), value=encode(ev)) for ev in batch]
        for fut in futures:
            fut.get(timeout=ctx.settings.api.request_timeout_s)
    except KafkaError as exc:
        raise HTTPException(503, f"kafka did not accept the events ({exc}); retry") from None
    ctx.metrics.events.labels("accepted").inc(len(batch))
    return {"accepted": len(batch)}


@router.get("/v1/items/{item_id}/similar", response_model=SimilarResponse, tags=["items"])
def get_similar(item_id: UserId, pipeline: PipelineDep, settings: SettingsDep, ctx: ContextDep,
                n: Annotated[int, Query(ge=1, le=200)] = 10) -> SimilarResponse:
    response = similar_items(pipeline, item_id, n)
    if response.degraded:  # similar_items degrades only when it caught StoreUnavailable
        ctx.metrics.store_unavailable.labels("similar").inc()
    return response


@router.get("/healthz", tags=["ops"])
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", tags=["ops"])
def readyz(ctx: ContextDep, response: Response) -> dict[str, Any]:
    checks = {"store": ctx.pipeline.ready(), "kafka": ctx.producer.get() is not None
              or not ctx.settings.kafka.bootstrap_servers}
    if not all(checks.values()):
        response.status_code = 503
    return {"ready": all(checks.values()), **checks}


@router.get("/metrics", tags=["ops"])
def metrics(ctx: ContextDep) -> Response:
    return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)
