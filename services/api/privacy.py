"""Data rights over REST: ``DELETE /v1/users/{id}`` and ``DELETE /v1/items/{id}`` (scope
``catalog:write``, or ``admin``) write a deletion request to the tenant's ``deletions`` topic, which
the eraser applies to every store (``services.eraser``); ``GET /v1/users/{id}/export`` (``admin``)
returns everything stored about a user."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel

from core.deletions import Deletion
from core.events import encode
from services.api.auth import requires
from services.api.deps import ApiContext, ContextDep
from services.api.ingest import send

router = APIRouter(tags=["data rights"])
Id = Annotated[str, Path(min_length=1, max_length=256)]


class DeletionAccepted(BaseModel):
    request_id: str
    kind: Literal["user", "item"]
    status: Literal["accepted"] = "accepted"


@router.delete("/v1/users/{user_id}", status_code=202, response_model=DeletionAccepted,
               dependencies=[Depends(requires("catalog:write"))])
def delete_user(user_id: Id, ctx: ContextDep, request: Request) -> DeletionAccepted:
    """Forget a user in every store (online state, Feast, archive, feeds topic) within seconds."""
    return _request(ctx, request, "user", user_id)


@router.delete("/v1/items/{item_id}", status_code=202, response_model=DeletionAccepted,
               dependencies=[Depends(requires("catalog:write"))])
def delete_item(item_id: Id, ctx: ContextDep, request: Request) -> DeletionAccepted:
    """Delete an item: out of every candidate pool, the index's answers and every feed, for good."""
    return _request(ctx, request, "item", item_id)


@router.get("/v1/users/{user_id}/export", dependencies=[Depends(requires("admin"))])
def export(user_id: Id, ctx: ContextDep) -> dict[str, Any]:
    """Everything stored about the user, as JSON (see ``services.privacy.export``)."""
    from services.privacy.export import export_user

    state = ctx.pipeline.state
    client = getattr(state, "r", None)
    reader = ctx.pipeline.reader
    feed = ctx.pipeline.cache.get(user_id)
    return export_user(ctx.settings, user_id, client, reader.user_features if reader else None,
                       feed.model_dump(mode="json") if feed is not None else None)


def _request(ctx: ApiContext, request: Request, kind: Literal["user", "item"], subject: str
             ) -> DeletionAccepted:
    deletion = Deletion(kind=kind, subject_id=subject, requested_at=time.time())
    send(ctx, ctx.topics.deletions, [subject], [encode(deletion)])  # 503 when Kafka refuses: retry
    request.app.state.auth.store.record_deletion(deletion.request_id, ctx.settings.tenancy.tenant, kind,
                                                 subject)
    return DeletionAccepted(request_id=deletion.request_id, kind=kind)
