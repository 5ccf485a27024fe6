"""Handlers: short, transport only. The funnel lives in ``funnel`` (wired by services.pipeline.build)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import Discriminator, Tag

from core.events import Feed, Interaction
from services.api.admission import Overloaded
from services.api.auth import requires
from services.api.catalog import router as catalog_router
from services.api.deps import ContextDep, PipelineDep, SettingsDep
from services.api.experiments import router as experiments_router
from services.api.ingest import checked, send
from services.api.privacy import router as privacy_router
from services.api.similar import SimilarResponse, similar_items

router = APIRouter()
UserId = Annotated[str, Path(min_length=1, max_length=256)]
RESERVED = frozenset({"n"})
# One event or a list of them; the shape picks the branch, so a 422 lists only that branch's errors.
Events = Annotated[Annotated[Interaction, Tag("event")] | Annotated[list[Interaction], Tag("batch")],
                   Discriminator(lambda v: "batch" if isinstance(v, list) else "event")]


@router.get("/v1/feed/{user_id}", response_model=Feed, tags=["feed"],
            dependencies=[Depends(requires("feed:read"))],
            responses={503: {"description": "overloaded: shed at once, retry after Retry-After seconds"}})
async def get_feed(user_id: UserId, request: Request, ctx: ContextDep,
                   n: Annotated[int | None, Query(ge=1, description="feed size (<= api.max_n)")] = None,
                   ) -> Response:
    """The user's feed. Extra query parameters are request context (e.g. ``?device=mobile``).

    Computed by a feed thread (``services.api.feeds``), so a slow store read never holds the event
    loop; under overload the request is shed at once (``api.max_in_flight``, ``api.queue_timeout_ms``):
    a 503 with ``Retry-After``, or with ``api.overload = degraded`` a feed marked ``degraded``."""
    if n is not None and n > ctx.settings.api.max_n:
        raise RequestValidationError([{"type": "less_than_equal", "loc": ("query", "n"), "input": n,
                                       "msg": f"n={n} exceeds api.max_n={ctx.settings.api.max_n}"}])
    context = {k: v for k, v in request.query_params.items() if k not in RESERVED}
    admitted_at = request.scope.get("state", {}).get("admitted_at")
    loop = asyncio.get_running_loop()
    try:
        status, headers, body = await loop.run_in_executor(
            ctx.feeds.pool, ctx.feeds.compute, user_id, n or ctx.settings.api.default_n, context, admitted_at)
    except Overloaded as exc:
        ctx.metrics.shed.labels(exc.reason).inc()
        status, headers, body = ctx.metrics.timed_shed(ctx.feeds.shed)(request.scope, exc.reason)
    return Response(body, status_code=status, media_type="application/json",
                    headers={k.decode(): v.decode() for k, v in headers})


@router.post("/v1/events", status_code=202, tags=["events"],
             dependencies=[Depends(requires("events:write"))])
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


@router.get("/v1/items/{item_id}/similar", response_model=SimilarResponse, tags=["items"],
            dependencies=[Depends(requires("feed:read"))])
def get_similar(item_id: UserId, pipeline: PipelineDep, settings: SettingsDep, ctx: ContextDep,
                n: Annotated[int, Query(ge=1, le=200)] = 10) -> SimilarResponse:
    response = similar_items(pipeline, item_id, n)
    if response.degraded:  # similar_items degrades only when it caught StoreUnavailable
        ctx.metrics.store_unavailable.labels("similar").inc()
    return response


# /healthz, /readyz, /metrics: on api.ops_port only (services.api.ops)
router.include_router(catalog_router,  # PUT /v1/items[/{id}], PUT /v1/users[/{id}]
                      dependencies=[Depends(requires("catalog:write"))])
router.include_router(experiments_router,  # GET /v1/experiments, /v1/experiments/{name}/report[.html]
                      dependencies=[Depends(requires("admin"))])
router.include_router(privacy_router)  # DELETE /v1/users/{id}, /v1/items/{id}; GET /v1/users/{id}/export
