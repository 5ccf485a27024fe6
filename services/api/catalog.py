"""Catalog and users over REST: ``PUT /v1/items/{id}``, ``PUT /v1/items`` (a batch), and the same for
users. Each record is validated by the model the worker decodes it with (core.events ItemUpsert /
UserUpsert), then by the worker's own checks (timestamps and ``created_at`` within its skew bounds,
64 KiB per encoded record, ``api.max_batch_events`` per request, ``api.max_body_bytes`` per body),
and written to its topic keyed by its id, like ``POST /v1/events``. A refused request writes nothing.

On ``PUT /v1/items/{id}`` the body may leave out ``item_id`` (the path names it); one that differs
from the path is a 422 on ``item_id``. A 422 lists errors as FastAPI does: ``loc`` names the field,
under ``body`` for one record and ``body, <index>`` in a batch.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Path
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from core.events import ItemUpsert, UserUpsert
from core.topics import ITEMS, USERS
from services.api.deps import ApiContext, ContextDep
from services.api.ingest import checked, send

router = APIRouter(tags=["catalog"])
Id = Annotated[str, Path(min_length=1, max_length=256)]
One = Annotated[dict[str, Any], Body(description="one record; the id field may be left out")]
Batch = Annotated[list[dict[str, Any]], Body(description="records, each with its id")]
M = TypeVar("M", bound=BaseModel)


@router.put("/v1/items/{item_id}", status_code=202)
def put_item(item_id: Id, body: One, ctx: ContextDep) -> dict[str, int]:
    """Create or replace one item (``created_at`` required, unix seconds)."""
    return _write(ctx, ITEMS, [_parsed(ItemUpsert, _with_id(body, "item_id", item_id), ("body",))])


@router.put("/v1/items", status_code=202)
def put_items(body: Batch, ctx: ContextDep) -> dict[str, int]:
    """Create or replace a batch of items; one invalid record refuses the whole request."""
    return _write(ctx, ITEMS, _parsed_all(ItemUpsert, body))


@router.put("/v1/users/{user_id}", status_code=202)
def put_user(user_id: Id, body: One, ctx: ContextDep) -> dict[str, int]:
    """Create or replace one user's profile (attributes, segment)."""
    return _write(ctx, USERS, [_parsed(UserUpsert, _with_id(body, "user_id", user_id), ("body",))])


@router.put("/v1/users", status_code=202)
def put_users(body: Batch, ctx: ContextDep) -> dict[str, int]:
    """Create or replace a batch of users; one invalid record refuses the whole request."""
    return _write(ctx, USERS, _parsed_all(UserUpsert, body))


def _with_id(body: dict[str, Any], field: str, path_id: str) -> dict[str, Any]:
    if field in body and body[field] != path_id:
        msg = f"{field} {body[field]!r} differs from the path's {path_id!r}"
        raise RequestValidationError([{"type": "value_error", "loc": ("body", field), "input": body[field],
                                       "msg": msg}])
    return {**body, field: path_id}


def _parsed(model: type[M], data: dict[str, Any], loc: tuple[str | int, ...]) -> M:
    """``model`` from ``data`` exactly as the worker validates it; else a 422 locating each error."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": (*loc, *e["loc"])} for e in exc.errors()]) from None


def _parsed_all(model: type[M], body: list[dict[str, Any]]) -> list[M]:
    return [_parsed(model, data, ("body", k)) for k, data in enumerate(body)]


def _write(ctx: ApiContext, kind: str, records: list[ItemUpsert] | list[UserUpsert]) -> dict[str, int]:
    counter = ctx.metrics.catalog
    payloads = checked(records, ctx, counter.labels(kind, "rejected").inc)
    keys = [r.item_id if isinstance(r, ItemUpsert) else r.user_id for r in records]
    send(ctx, ctx.topics.name(kind), keys, payloads)
    counter.labels(kind, "accepted").inc(len(records))
    return {"accepted": len(records)}
