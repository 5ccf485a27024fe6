"""Who may read the console and who may change things from it: the one place that decides.

The API's authenticator (``app.state.auth``, ``services.api.auth``) resolves a credential to a
principal with scopes; with authentication off it answers "anonymous, every scope", which is the case
whenever the API has no keys (local mode, loopback only). So:

* authentication off: every page, every action (as for every other route of the API);
* authentication on: pages need a valid key or token, of any scope; promote and roll back need
  ``admin``. Without a credential a page shows the sign-in form (401).

A browser sends its key as the ``streamrec_key`` cookie, set by the console's sign-in form (HttpOnly,
SameSite=Strict, path /console) or, like any client, in ``Authorization: Bearer`` / ``X-API-Key``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request

log = logging.getLogger(__name__)
COOKIE = "streamrec_key"
ADMIN = "admin"
DEFAULT_TENANT = "default"  # the console shows the deployment's own namespace: other tenants' keys get 403


@dataclass(frozen=True)
class Viewer:
    signed_in: bool  # a credential was presented and accepted
    admin: bool
    auth: bool  # authentication is on
    subject: str = "anonymous"


def _headers(request: Request) -> dict[str, str]:
    headers = {k.lower(): v for k, v in request.headers.items()}
    cookie = request.cookies.get(COOKIE)
    if cookie and "authorization" not in headers and "x-api-key" not in headers:
        headers["authorization"] = f"Bearer {cookie}"
    return headers


def viewer(request: Request) -> Viewer:
    """The console's caller. Raises 401 when authentication is on and no valid credential came."""
    auth: Any = getattr(request.app.state, "auth", None)
    if auth is None or not getattr(auth, "required", False):
        return Viewer(False, True, False)
    principal = auth.principal(_headers(request))  # raises 401 (HTTPException) without a valid one
    if getattr(principal, "tenant", DEFAULT_TENANT) != DEFAULT_TENANT:  # the operator's tenant only
        raise HTTPException(403, "the console belongs to the deployment's operators (tenant 'default'); "
                                 f"this key is tenant {principal.tenant!r}'s")
    scopes = set(getattr(principal, "scopes", ()))
    return Viewer(True, ADMIN in scopes, True, str(getattr(principal, "subject", "?")))


def require_admin(request: Request) -> Viewer:
    who = viewer(request)
    if not who.admin:
        raise HTTPException(403, "this console action needs a key with the admin scope")
    return who


def same_origin(request: Request) -> None:
    """A state-changing console form must come from the console itself (CSRF)."""
    origin = request.headers.get("origin")
    if origin is not None and origin.rstrip("/") != str(request.base_url).rstrip("/"):
        raise HTTPException(403, f"cross-origin console action refused (Origin {origin})")
