"""Control-plane tables (the control database, ``core.tenancy.control_url``): tenants, API keys, and
the deletion requests' progress. A key's secret is never stored: only its SHA-256 (keys are 32 random
bytes, so a fast hash is enough, as for session tokens); a deletion request stores the SHA-256 of the
subject, not its id, so the registry itself keeps no trace of a forgotten user."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from services.metadata.models import Base


class Tenant(Base):
    __tablename__ = "tenants"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)


class ApiKey(Base):
    """One API key: ``sr_<key_id>_<secret>``; ``key_id`` is public (listed), the secret is not."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True, index=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.name"), index=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    scopes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float, default=time.time)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class DeletionRequest(Base):
    """One ``DELETE`` / ``streamrec forget``: which stores have erased the subject so far."""

    __tablename__ = "deletion_requests"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    tenant: Mapped[str] = mapped_column(String(32), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # user | item
    subject_sha256: Mapped[str] = mapped_column(String(64), index=True)
    requested_at: Mapped[float] = mapped_column(Float, default=time.time)
    done: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # store -> unix time erased
    completed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
