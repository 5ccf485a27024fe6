"""Wires authentication, rate limits, tenants and the ops port into the API app (``create_app``)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from prometheus_client import CollectorRegistry
from starlette.types import Scope

from core.settings import Settings
from services.api.admission import Answer, reject
from services.api.auth import Authenticator, Unauthorized, scope_of
from services.api.deps import ApiContext
from services.api.ratelimit import RateLimiter
from services.api.tenants import BuildPipeline, TenantContexts, TenantMetrics, real_pipeline
from services.metadata.access_store import AccessStore
from services.publisher.kafka_io import CProducer

log = logging.getLogger(__name__)
# A 422 names the field (FastAPI's list), or the refused record and why (services.api.ingest), or the limit
REFUSAL = {"type": "object", "title": "Refusal", "required": ["detail"], "properties": {"detail": {"anyOf": [
    {"type": "array", "items": {"$ref": "#/components/schemas/ValidationError"}},
    {"type": "object", "required": ["reason", "detail"], "properties": {
        "reason": {"type": "string"}, "detail": {"type": "string"}, "index": {"type": "integer"}}},
    {"type": "string"}]}}}
ERRORS = {
    400: {"description": "a body that cannot be read as JSON (e.g. not UTF-8)"},
    401: {"description": "no credential, or an unknown, revoked or expired one"},
    403: {"description": "the credential lacks this route's scope"},
    413: {"description": "request body larger than api.max_body_bytes"},
    429: {"description": "rate limit of the credential for this scope; retry after Retry-After seconds"},
    503: {"description": "a dependency (Kafka, a store) is unavailable or the process is overloaded"},
}


class Security:
    """The app's authenticator, limiter, tenants and metrics (kept on ``app.state``)."""

    def __init__(self, app: FastAPI, settings: Settings, ctx: ApiContext, producer: CProducer,
                 build: BuildPipeline | None = None, store: AccessStore | None = None) -> None:
        self.settings, self.default = settings, ctx
        self.auth = Authenticator(settings, store)
        self.registry = CollectorRegistry()
        self.tenants = TenantContexts(settings, ctx, producer, build or real_pipeline)
        self.registry.register(TenantMetrics(self.tenants))
        client = _limiter_client(settings) if settings.auth_required else None
        self.limiter = RateLimiter(settings, client, self.registry)
        self._reject = reject(settings.api.retry_after_s)
        app.state.auth, app.state.limiter, app.state.tenants = self.auth, self.limiter, self.tenants
        _document(app, {("/v1/feed/{user_id}", "n"): settings.api.max_n})

    def warm(self) -> None:
        """At start-up, not on the first request: open (and migrate) the key store, load the
        limiter's script."""
        if not self.auth.required:
            return
        try:
            self.auth.store.ping()
        except Exception as exc:  # noqa: BLE001 - /readyz says keys: false until it answers
            log.warning("key store not reachable at start-up: %s", type(exc).__name__)
        self.limiter.warm()

    def shed(self, scope: Scope, reason: str) -> Answer:
        """A shed feed request's answer, on the event loop: the tenant's degraded feed only for a
        credential already known (cached) to hold ``feed:read``; otherwise the plain 503."""
        try:
            principal = self.auth.principal(scope.get("headers", []), cached_only=True)
        except Unauthorized:
            principal = None
        ctx = self.tenants.peek(principal.tenant) if principal and principal.allows("feed:read") else None
        if ctx is None:
            return self._reject(scope, reason)
        return ctx.feeds.shed(scope, reason)

    def ready(self) -> dict[str, Any]:
        ctx = self.default
        checks: dict[str, Any] = {
            "store": ctx.pipeline.ready(),
            "kafka": ctx.producer.ready() or not self.settings.kafka.bootstrap_servers}
        if self.auth.required:
            try:
                self.auth.store.ping()
                checks["keys"] = True
            except Exception:  # noqa: BLE001 - any failure: not ready, say which
                checks["keys"] = False
        return checks

    def close(self) -> None:
        self.tenants.close()
        if self.limiter.client is not None:
            self.limiter.client.close()


def _limiter_client(settings: Settings) -> Any:
    if not settings.redis.url:
        return None
    from feature_store.online.redis_state import redis_client

    return redis_client(settings)


def _document(app: FastAPI, maxima: dict[tuple[str, str], int]) -> None:
    """Every /v1 operation of the OpenAPI lists the error answers it can give, its scope and the two
    ways to send a key (``Authorization: Bearer`` or ``X-API-Key``); ``maxima``: (path, query
    parameter) -> the maximum a setting gives it."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        scopes = route_scopes(app)
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes["bearer"] = {"type": "http", "scheme": "bearer",
                             "description": "an API key (streamrec keys create) or a JWT"}
        schemes["apiKey"] = {"type": "apiKey", "in": "header", "name": "X-API-Key"}
        schema["components"].setdefault("schemas", {})["Refusal"] = REFUSAL
        for path, ops in schema.get("paths", {}).items():
            for method, op in ops.items() if path.startswith("/v1") else ():
                for code, doc in ERRORS.items():
                    op.setdefault("responses", {}).setdefault(str(code), doc)
                if "{" in path:
                    op["responses"].setdefault("404", {"description": "no such resource (e.g. experiment)"})
                if "422" in op["responses"]:
                    op["responses"]["422"]["content"] = {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Refusal"}}}
                for param in op.get("parameters", []):
                    if (path, param.get("name")) in maxima:
                        _set_maximum(param["schema"], maxima[(path, param["name"])])
                scope = scopes.get((method.upper(), path))
                if scope:
                    op["description"] = f"{op.get('description', '')}\n\nScope: `{scope}`".strip()
                    op["security"] = [{"bearer": []}, {"apiKey": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def route_scopes(app: FastAPI) -> dict[tuple[str, str], str | None]:
    """(method, path) -> the scope each API route declared (None: none), included routers' too."""
    return {(m, r.path): scope_of(r.dependencies) for r in iter_route_contexts(app.routes)
            if r.path and r.methods and isinstance(r.original_route, APIRoute) for m in r.methods}


def _set_maximum(schema: dict[str, Any], maximum: int) -> None:
    for option in schema.get("anyOf", [schema]):
        if option.get("type") == "integer":
            option["maximum"] = maximum
