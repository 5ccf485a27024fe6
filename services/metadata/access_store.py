"""Tenants, API keys and deletion requests in the control database.

Example:
    >>> store = AccessStore("sqlite:///var/metadata.db")                       # doctest: +SKIP
    >>> store.create_tenant("acme")                                            # doctest: +SKIP
    >>> key, row = store.create_key("acme", ["feed:read"], name="web")          # doctest: +SKIP
    >>> store.lookup(key).tenant                                                # doctest: +SKIP
    'acme'
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from core.tenancy import DEFAULT, check_name
from services.metadata.access import ApiKey, DeletionRequest, Tenant
from services.metadata.store import MetadataStore

SCOPES = ("feed:read", "events:write", "catalog:write", "admin")
PREFIX = "sr_"


@dataclass(frozen=True)
class KeyInfo:
    """What a key grants (never its secret)."""

    key_id: str
    tenant: str
    scopes: frozenset[str]
    name: str = ""
    created_at: float = 0.0
    revoked_at: float | None = None


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def split_key(key: str) -> tuple[str, str] | None:
    """(key id, secret) of ``sr_<id>_<secret>``, or None when it is not shaped like a key."""
    if not key.startswith(PREFIX):
        return None
    key_id, sep, secret = key[len(PREFIX):].partition("_")
    if not sep or len(key_id) != 12 or not key_id.isalnum() or len(secret) < 20:
        return None
    return key_id, secret


class AccessStore(MetadataStore):
    """The control-plane tables; the same database and migrations as the lifecycle registry."""

    # ---- tenants --------------------------------------------------------------------------------
    def create_tenant(self, name: str) -> bool:
        """True when created, False when it existed."""
        check_name(name)
        with self.session() as s:
            if s.get(Tenant, name) is not None:
                return False
            s.add(Tenant(name=name, created_at=time.time()))
        return True

    def tenants(self) -> list[str]:
        with self.session() as s:
            return list(s.scalars(select(Tenant.name).order_by(Tenant.name)))

    def has_tenant(self, name: str) -> bool:
        with self.session() as s:
            return s.get(Tenant, name) is not None

    # ---- keys -----------------------------------------------------------------------------------
    def create_key(self, tenant: str, scopes: list[str], name: str = "") -> tuple[str, KeyInfo]:
        """A new key (shown once) for ``tenant``; raises ValueError for an unknown tenant or scope."""
        bad = sorted(set(scopes) - set(SCOPES))
        if bad or not scopes:
            raise ValueError(f"scopes {bad or '(none)'}: choose from {', '.join(SCOPES)}")
        if tenant == DEFAULT:
            self.create_tenant(DEFAULT)  # the deployment's own namespace always exists
        elif not self.has_tenant(tenant):
            raise ValueError(f"no tenant {tenant!r}; create it first (streamrec tenants create {tenant})")
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        row = ApiKey(key_id=key_id, tenant=tenant, name=name, scopes=sorted(set(scopes)),
                     secret_sha256=sha256(secret), created_at=time.time())
        with self.session() as s:
            s.add(row)
        return f"{PREFIX}{key_id}_{secret}", _info(row)

    def lookup(self, key: str) -> KeyInfo | None:
        """The key's grant, or None: unknown, wrong secret or revoked (all the same to a caller)."""
        parts = split_key(key)
        if parts is None:
            return None
        with self.session() as s:
            row = s.scalars(select(ApiKey).where(ApiKey.key_id == parts[0])).first()
            if row is None or row.revoked_at is not None:
                return None
            if not hmac.compare_digest(row.secret_sha256, sha256(parts[1])):
                return None
            return _info(row)

    def keys(self, tenant: str | None = None) -> list[KeyInfo]:
        with self.session() as s:
            q = select(ApiKey).order_by(ApiKey.created_at)
            if tenant is not None:
                q = q.where(ApiKey.tenant == tenant)
            return [_info(r) for r in s.scalars(q)]

    def revoke(self, key_id: str) -> bool:
        with self.session() as s:
            n = s.execute(update(ApiKey).where(ApiKey.key_id == key_id, ApiKey.revoked_at.is_(None))
                          .values(revoked_at=time.time())).rowcount  # type: ignore[attr-defined]
        return bool(n)

    # ---- deletion requests ----------------------------------------------------------------------
    def record_deletion(self, request_id: str, tenant: str, kind: str, subject: str) -> None:
        with self.session() as s:
            if s.scalars(select(DeletionRequest).where(DeletionRequest.request_id == request_id)).first():
                return
            s.add(DeletionRequest(request_id=request_id, tenant=tenant, kind=kind,
                                  subject_sha256=sha256(f"{tenant}/{kind}/{subject}"),
                                  requested_at=time.time(), done={}))

    def mark_erased(self, request_id: str, store: str, stores: tuple[str, ...]) -> None:
        """``store`` erased the request's subject; complete once every one of ``stores`` did."""
        with self.session() as s:
            row = s.scalars(select(DeletionRequest).where(DeletionRequest.request_id == request_id)).first()
            if row is None:
                return
            done = {**row.done, store: time.time()}
            row.done = done
            if set(stores) <= set(done) and row.completed_at is None:
                row.completed_at = time.time()

    def deletions(self, tenant: str | None = None) -> list[dict[str, Any]]:
        with self.session() as s:
            q = select(DeletionRequest).order_by(DeletionRequest.requested_at)
            if tenant is not None:
                q = q.where(DeletionRequest.tenant == tenant)
            return [{"request_id": r.request_id, "tenant": r.tenant, "kind": r.kind, "done": r.done,
                     "requested_at": r.requested_at, "completed_at": r.completed_at} for r in s.scalars(q)]


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(row.key_id, row.tenant, frozenset(row.scopes), row.name, row.created_at, row.revoked_at)
