"""Handlers: short, transport only. The funnel lives in ``funnel`` (wired by services.pipeline.build)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import Discriminator, Tag

from core.events import Feed, Interaction, encode
from services.api.catalog import router as catalog_router
from services.api.deps import ContextDep, PipelineDep, SettingsDep
from services.api.experiments import router as experiments_router
from services.api.ingest import checked, send
from services.api.similar import SimilarResponse, similar_items

router = APIRouter()
UserId = Annotated[str, Path(min_length=1, max_length=256)]
RESERVED = frozenset({"n"})
STORE_FALLBACK = "fallback:store"  # Feed.trigger of the fallback the pipeline serves on StoreUnavailable
# One event or a list of them; the shape picks the branch, so a 422 lists only that branch's errors.
Events = Annotated[Annotated[Interaction, Tag("event")] | Annotated[list[Interaction], Tag("batch")],
                   Discriminator(lambda v: "batch" if isinstance(v, list) else "event")]


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
    elapsed = time.perf_counter() - t0
    ctx.metrics.latency.observe(elapsed)
    ctx.metrics.feeds.labels(str(result.feed.degraded).lower()).inc()
    if result.feed.trigger == STORE_FALLBACK:
        ctx.metrics.store_unavailable.labels("feed").inc()
    for stage, ms in result.stages_ms.items():
        ctx.metrics.stage.labels(stage).observe(ms / 1e3)
    ctx.impressions.log(result.feed, elapsed * 1e3)
    timing = ", ".join(f"{k};dur={v:.3f}" for k, v in result.stages_ms.items())
    return Response(encode(result.feed), media_type="application/json",
                    headers={"Server-Timing": timing, "X-Candidates": str(result.candidates)})


@router.post("/v1/events", status_code=202, tags=["events"])
def post_events(events: Annotated[Events, Body()], ctx: ContextDep) -> dict[str, int]:
    """Validates interactions and writes them to the interactions topic. A bad event gets a 422
    naming it and the field (non-finite numbers and negative values included); the whole request is
    then refused. Limits: ``api.max_batch_events`` per request (422), ``api.max_body_bytes`` per body
    (413), 64 KiB per encoded event (422), timestamps within the worker's skew bounds (422)."""
    batch = events if isinstance(events, list) else [events]
    payloads = checked(batch, ctx, ctx.metrics.events.labels("rejected").inc)
    send(ctx, ctx.topics.interactions, [ev.user_id for ev in batch], payloads)
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


router.include_router(catalog_router)  # PUT /v1/items[/{id}], PUT /v1/users[/{id}]
router.include_router(experiments_router)  # GET /v1/experiments, /v1/experiments/{name}/report[.html]
