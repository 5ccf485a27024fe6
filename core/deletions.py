"""The record of the ``deletions`` topic: forget a user or an item, in every store (issue 16).

Written by ``DELETE /v1/users/{id}``, ``DELETE /v1/items/{id}`` and ``streamrec forget``, keyed by the
subject's id; consumed by the eraser (``services.eraser``), which erases the subject from the online
state, Feast's online store, the archive and the ``feeds`` topic and records each store's progress
(hashed) in the control database.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Id = Annotated[str, StringConstraints(min_length=1, max_length=256)]
KINDS = ("user", "item")


class Deletion(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    request_id: str = Field(default_factory=lambda: uuid.uuid4().hex, max_length=64)
    kind: Literal["user", "item"]
    subject_id: Id
    requested_at: float = Field(ge=0, allow_inf_nan=False)


def pseudonym(tenant: str, kind: str, subject_id: str) -> str:
    """A subject's stable stand-in (SHA-256, 16 bytes hex) where a store must remember a forgotten
    subject without keeping its id (the workers' guard against replayed events)."""
    return hashlib.sha256(f"{tenant}/{kind}/{subject_id}".encode()).hexdigest()[:32]


def decode_deletion(raw: bytes) -> Deletion:
    """A record of the ``deletions`` topic; raises :class:`core.events.EventError` naming the problem."""
    from pydantic import ValidationError

    from core.events import EventError

    try:
        return Deletion.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "record"
        raise EventError("invalid", f"{where}: {first['msg']}") from None
