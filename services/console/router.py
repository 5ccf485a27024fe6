"""``/console``: the operator console's pages and its two admin actions. Server-rendered HTML; every
page is a plain GET that reads the live sources, every action a POST form that needs the admin check
(``services.console.access``) and redirects back with what happened.

Handlers are sync: FastAPI runs them in its thread pool, so a slow registry, Redis or broker never
holds the event loop that admits feed requests.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from importlib import resources
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from services.api.deps import ContextDep
from services.console import access, registry
from services.console.inspect import explanation, inspect, parse_context
from services.console.state import ConsoleState, console_state

router = APIRouter(prefix="/console", tags=["console"], include_in_schema=False)
PAGES = (("overview", "Overview"), ("models", "Models & indexes"), ("drift", "Drift"),
         ("inspect", "Feed inspector"), ("experiments", "Experiments"))
STATIC = {"console.css": "text/css", "console.js": "text/javascript"}
CSP = ("default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
Kind = Annotated[str, Path(pattern=r"^[a-z0-9_]{1,32}$")]


HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}


def _state(request: Request, ctx: ContextDep) -> ConsoleState:
    if not ctx.settings.console.enabled:
        raise HTTPException(404, "the console is disabled (console.enabled = false)")
    return console_state(ctx, request.app.state)


def page(fn: Callable[..., HTMLResponse]) -> Callable[..., HTMLResponse]:
    """A console page: with authentication on and no valid credential, the sign-in page (401)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> HTMLResponse:
        request: Request = kwargs["request"]
        try:
            request.state.viewer = access.viewer(request)
        except HTTPException as exc:
            if exc.status_code != 401:
                raise
            st = _state(request, kwargs["ctx"])
            body = st.env.get_template("signin.html").render(
                page="signin", pages=PAGES, viewer=access.Viewer(False, False, True), msg="", err=exc.detail,
                now=time.time())
            return HTMLResponse(body, 401, headers=HEADERS)
        return fn(*args, **kwargs)

    return wrapper


def _page(request: Request, st: ConsoleState, template: str, t0: float, **data: Any) -> HTMLResponse:
    body = st.env.get_template(f"{template}.html").render(
        page=template, pages=PAGES, viewer=request.state.viewer, admin=request.state.viewer.admin,
        msg=request.query_params.get("msg", ""), err=request.query_params.get("err", ""),
        now=time.time(), **data)
    ms = (time.perf_counter() - t0) * 1e3
    return HTMLResponse(body, headers={**HEADERS, "Server-Timing": f"console;dur={ms:.1f}"})


@router.get("", include_in_schema=False)
def home() -> RedirectResponse:
    return RedirectResponse("/console/overview", 303)


@router.get("/static/{name}")
def static(name: str) -> Response:
    if name not in STATIC:
        raise HTTPException(404, f"no console asset {name}")
    body = resources.files("services.console").joinpath("static", name).read_bytes()
    return Response(body, media_type=STATIC[name], headers={"Cache-Control": "max-age=300"})


@router.get("/overview")
@page
def overview(request: Request, ctx: ContextDep, refresh: Annotated[int, Query(ge=0, le=3600)] = 10
             ) -> HTMLResponse:
    t0 = time.perf_counter()
    st = _state(request, ctx)
    try:
        view, error = st.source.overview(), ""
    except Exception as exc:  # noqa: BLE001 - a source that fails is shown, not a 500
        from services.console.overview import Overview

        view, error = Overview("unavailable", 0.0), f"{type(exc).__name__}: {exc}"
    return _page(request, st, "overview", t0, view=view, source_error=error, dlq=st.dead_letters.view(),
                 refresh=refresh)


@router.get("/models")
@page
def models(request: Request, ctx: ContextDep) -> HTMLResponse:
    t0 = time.perf_counter()
    st = _state(request, ctx)
    current = ctx.pipeline.models.current
    serving = {"models": current.model_version, "index": current.index_version}
    return _page(request, st, "models", t0, view=registry.models_view(st.meta, serving), gate=registry.gate)


async def _form(request: Request, limit: int = 4096) -> dict[str, str]:
    """An urlencoded form body (small: the console's forms have one field)."""
    body = await request.body()
    if len(body) > limit:
        raise HTTPException(413, f"console form body over {limit} bytes")
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


def _act(request: Request, ctx: ContextDep, action: Any) -> RedirectResponse:
    st = _state(request, ctx)
    access.same_origin(request)
    viewer = access.require_admin(request)
    host = request.client.host if request.client else "?"
    who = f"key {viewer.subject}" if viewer.signed_in else f"the console at {host}"
    try:
        return RedirectResponse(f"/console/models?msg={quote(action(st, who))}", 303)
    except (KeyError, ValueError) as exc:
        return RedirectResponse(f"/console/models?err={quote(str(exc.args[0] if exc.args else exc))}", 303)


@router.post("/models/{kind}/rollback")
def rollback(kind: Kind, request: Request, ctx: ContextDep) -> RedirectResponse:
    return _act(request, ctx, lambda st, who: registry.rollback_kind(st.settings, st.meta, kind, who))


@router.post("/models/{kind}/promote")
async def promote(kind: Kind, request: Request, ctx: ContextDep) -> RedirectResponse:
    version = (await _form(request)).get("version", "")
    if not version.isdigit() or len(version) > 12:
        raise HTTPException(422, f"version: {version!r} is not a model version number")
    return await run_in_threadpool(_act, request, ctx, lambda st, who: registry.promote_version(
        st.settings, st.meta, kind, version, who))


@router.get("/drift")
@page
def drift(request: Request, ctx: ContextDep) -> HTMLResponse:
    t0 = time.perf_counter()
    st = _state(request, ctx)
    return _page(request, st, "drift", t0, view=registry.drift_view(st.meta), moved=registry.moved)


@router.get("/inspect")
@page
def inspector(request: Request, ctx: ContextDep,
              user: Annotated[str, Query(max_length=256)] = "",
              context: Annotated[str, Query(max_length=1024)] = "",
              n: Annotated[int | None, Query(ge=1)] = None) -> HTMLResponse:
    t0 = time.perf_counter()
    st = _state(request, ctx)
    size = min(n or ctx.settings.api.default_n, ctx.settings.api.max_n)
    found, error = None, ""
    if user.strip():
        try:
            found = inspect(ctx.pipeline, user.strip(), parse_context(context), size)
        except ValueError as exc:
            error = str(exc)
    return _page(request, st, "inspect", t0, user=user, context=context, n=size, found=found,
                 input_error=error, explain=explanation)


@router.get("/experiments")
@page
def experiments(request: Request, ctx: ContextDep) -> HTMLResponse:
    t0 = time.perf_counter()
    from services.api.experiments import _experiments
    from services.experiments.report import summary

    st = _state(request, ctx)
    live, status = _experiments(ctx)
    return _page(request, st, "experiments", t0, experiments=summary(live, time.time()), status=status)


@router.get("/experiments/{name}")
@page
def experiment(name: str, request: Request, ctx: ContextDep,
               looks: Annotated[int, Query(ge=1, le=200)] = 20) -> HTMLResponse:
    t0 = time.perf_counter()
    from services.api.experiments import _report
    from services.experiments import html as report_html

    st = _state(request, ctx)
    report = _report(name, looks, request, ctx)  # 404 for an unknown name, 503 without the log
    return _page(request, st, "experiment", t0, name=name, report=report,
                 arms=report_html._arms_table(report), comparisons=report_html._comparisons_table(report),
                 charts=report_html._charts(report))


@router.post("/signin")
async def signin(request: Request) -> RedirectResponse:
    """Keep an API key in an HttpOnly, SameSite=Strict cookie, so the console's forms can send it."""
    access.same_origin(request)
    key = (await _form(request)).get("key", "").strip()
    if not key or len(key) > 512:
        raise HTTPException(422, "key: an API key (1 to 512 characters) is required")
    response = RedirectResponse("/console/overview", 303)
    response.set_cookie(access.COOKIE, key, httponly=True, samesite="strict", path="/console",
                        secure=request.url.scheme == "https")
    return response


@router.post("/signout")
def signout(request: Request) -> RedirectResponse:
    access.same_origin(request)
    response = RedirectResponse("/console/overview", 303)
    response.delete_cookie(access.COOKIE, path="/console")
    return response
