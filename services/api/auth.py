"""Who is calling, for which tenant, with which scopes.

A request carries an API key (``Authorization: Bearer sr_...`` or ``X-API-Key: sr_...``, made by
``streamrec keys create``) or, when ``auth.jwt_issuer`` is set, a JWT signed by a key of
``auth.jwks_file`` whose ``iss`` is that issuer (its ``tenant`` and ``scope`` claims give the grant).
Each route declares its scope with :func:`requires`; a missing or unknown credential gets a 401, a
credential without the scope a 403, each saying why. ``admin`` grants every scope of its tenant.

Keys are looked up in the control database (only their SHA-256 is stored) and the answer, positive
or negative, is cached for ``auth.key_cache_ttl_s``, keyed by the key's hash: a revoked key stops
working within that time, and no key is ever kept, logged or echoed in plain text.

With authentication off (``auth.enabled``; by default off in local mode, which then listens on
loopback only) every request is the default tenant's, with every scope.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import jwt
from fastapi import Depends, HTTPException, Request

from core.settings import Settings
from core.tenancy import DEFAULT, check_name, control_url
from services.metadata.access_store import SCOPES, AccessStore, KeyInfo, sha256

log = logging.getLogger(__name__)
CACHE_MAX = 100_000


@dataclass(frozen=True)
class Principal:
    """The caller: its tenant, scopes and a public id (key id, or ``jwt:<sub>``) for limits."""

    tenant: str
    scopes: frozenset[str]
    subject: str

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


ANONYMOUS = Principal(DEFAULT, frozenset(SCOPES), "anonymous")


class Unauthorized(HTTPException):
    def __init__(self, detail: str) -> None:
        super().__init__(401, detail, headers={"WWW-Authenticate": 'Bearer realm="streamrec"'})


class Authenticator:
    """Resolves a request's credential to a :class:`Principal` (see the module docstring)."""

    def __init__(self, settings: Settings, store: AccessStore | None = None) -> None:
        self.required = settings.auth_required
        self.ttl_s = settings.auth.key_cache_ttl_s
        self._store = store
        self._url = control_url(settings)
        self._cache: dict[str, tuple[float, KeyInfo | None]] = {}
        self._lock = threading.Lock()
        self.jwt = JwtVerifier(settings) if settings.auth.jwt_issuer else None

    @property
    def store(self) -> AccessStore:
        if self._store is None:
            self._store = AccessStore(self._url)
        return self._store

    def principal(self, headers: Any, cached_only: bool = False) -> Principal | None:
        """The caller of a request with these headers; raises :class:`Unauthorized`. ``cached_only``:
        None instead of a database lookup (for answers given on the event loop)."""
        if not self.required:
            return ANONYMOUS
        token = credential(headers)
        if token is None:
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
        if self.jwt is not None and token.count(".") == 2:
            return self.jwt.principal(token)
        info = self._key(token, cached_only)
        if info is None:
            if cached_only:
                return None
            raise Unauthorized("invalid or revoked API key")
        return Principal(info.tenant, info.scopes, info.key_id)

    def _key(self, token: str, cached_only: bool) -> KeyInfo | None:
        digest, now = sha256(token), time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        if cached_only:
            return None
        info = self.store.lookup(token)
        with self._lock:
            if len(self._cache) >= CACHE_MAX:
                self._cache.clear()
            self._cache[digest] = (now + self.ttl_s, info)
        return info


def credential(headers: Any) -> str | None:
    """The key or token of ``Authorization: Bearer ...`` or ``X-API-Key`` (Starlette headers or an
    ASGI scope's header list)."""
    if isinstance(headers, list):
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers}
    auth = headers.get("authorization")
    if auth:
        kind, _, value = auth.partition(" ")
        return value.strip() or None if kind.lower() == "bearer" else None
    key = headers.get("x-api-key")
    return key.strip() or None if key else None


class JwtVerifier:
    """JWTs of ``auth.jwt_issuer``, signed by a key of ``auth.jwks_file`` (re-read when it changes)."""

    def __init__(self, settings: Settings) -> None:
        a = settings.auth
        assert a.jwt_issuer is not None and a.jwks_file is not None
        self.issuer, self.audience, self.path = a.jwt_issuer, a.jwt_audience, a.jwks_file
        self.algorithms = a.jwt_algorithms
        self.tenant_claim, self.scope_claim = a.jwt_tenant_claim, a.jwt_scope_claim
        self._keys: dict[str, Any] = {}
        self._mtime = -1.0
        self._load()

    def _load(self) -> None:
        mtime = self.path.stat().st_mtime
        if mtime != self._mtime:
            jwks = jwt.PyJWKSet.from_dict(json.loads(self.path.read_text()))
            self._keys = {k.key_id: k for k in jwks.keys if k.key_id}
            self._mtime = mtime

    def principal(self, token: str) -> Principal:
        try:
            self._load()
            kid = jwt.get_unverified_header(token).get("kid")
            key = self._keys.get(kid or "")
            if key is None:
                raise Unauthorized("JWT signed by an unknown key (kid not in auth.jwks_file)")
            claims = jwt.decode(token, key.key, algorithms=self.algorithms, issuer=self.issuer,
                                audience=self.audience, options={"require": ["exp", "iss"],
                                                                 "verify_aud": self.audience is not None})
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid JWT: {exc}") from None
        try:
            tenant = check_name(str(claims.get(self.tenant_claim, "")))
        except ValueError:
            raise Unauthorized(f"JWT has no valid {self.tenant_claim!r} claim") from None
        scopes = frozenset(str(claims.get(self.scope_claim, "")).split()) & frozenset(SCOPES)
        return Principal(tenant, scopes, f"jwt:{claims.get('sub', '?')}")


async def authenticator(request: Request) -> Authenticator:
    auth: Authenticator = request.app.state.auth
    return auth


def requires(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A route dependency: the caller, once it holds ``scope`` and is within its rate limit."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    async def check(request: Request, auth: Annotated[Authenticator, Depends(authenticator)]) -> Principal:
        # on the event loop when the answer is known (auth off, or a cached key); I/O in a thread
        principal = auth.principal(request.headers, cached_only=True)
        if principal is None:
            principal = await asyncio.to_thread(auth.principal, request.headers)
        assert principal is not None
        if not principal.allows(scope):
            have = ", ".join(sorted(principal.scopes)) or "none"
            raise HTTPException(403, f"this credential lacks scope {scope!r} (it has: {have})")
        request.state.principal = principal
        if auth.required:  # a bucket per credential: without authentication there is none
            await asyncio.to_thread(request.app.state.limiter.take, principal, scope)
        return principal

    check.__name__ = f"requires_{scope.replace(':', '_')}"
    return check


def scope_of(route_dependencies: list[Any]) -> str | None:
    """The scope a route declared with :func:`requires` (for the OpenAPI and the tests)."""
    for dep in route_dependencies:
        name = getattr(dep.dependency, "__name__", "")
        if name.startswith("requires_"):
            return name.removeprefix("requires_").replace("_", ":", 1)
    return None
