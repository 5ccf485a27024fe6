"""Read-only experiment routes: the experiments this API serves (as last reloaded) and the report of
one of them, as JSON or as the HTML page ``streamrec experiments report`` writes.

Reports read the event log (the Kafka topics by default; ``app.state.experiment_source`` may name a
JSON-lines log instead) in the request's worker thread, and are cached for ``CACHE_S`` seconds.
"""

from __future__ import annotations

import threading
import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse

from core.errors import BrokerUnavailable
from core.experiment_config import Experiment
from services.api.deps import ContextDep

router = APIRouter(prefix="/v1/experiments", tags=["experiments"])
CACHE_S = 30.0
Name = Annotated[str, Path(min_length=1, max_length=64)]
Looks = Annotated[int, Query(ge=1, le=200, description="points in time of the sequential tests")]
_cache: dict[tuple[str, int, str], tuple[float, dict[str, Any]]] = {}
_lock = threading.Lock()


def _experiments(ctx: ContextDep) -> tuple[list[Experiment], dict[str, Any]]:
    from funnel.experiments import Experiments

    live = ctx.pipeline.experiments
    if isinstance(live, Experiments):
        status = live.status()
        return list(live.experiments), {k: v for k, v in status.items() if k != "experiments"}
    return list(ctx.settings.experiments), {}


@router.get("")
def list_experiments(ctx: ContextDep) -> dict[str, Any]:
    """The experiments being served, whether each runs now, and the reload state."""
    from services.experiments.report import summary

    experiments, status = _experiments(ctx)
    return {"experiments": summary(experiments, time.time()), **status}


def _report(name: str, looks: int, request: Request, ctx: ContextDep) -> dict[str, Any]:
    from services.experiments.report import experiment_report, find

    experiments, _ = _experiments(ctx)
    try:
        exp = find(experiments, name)
    except KeyError as exc:
        raise HTTPException(404, str(exc.args[0])) from None
    source = getattr(request.app.state, "experiment_source", "kafka")
    key = (name, looks, source)
    with _lock:
        hit = _cache.get(key)
    if hit is not None and time.monotonic() - hit[0] < CACHE_S:
        return hit[1]
    try:
        report = experiment_report(exp, ctx.settings, source, looks)
    except BrokerUnavailable as exc:
        raise HTTPException(503, f"the event log is unavailable: {exc}") from None
    with _lock:
        _cache[key] = (time.monotonic(), report)
    return report


@router.get("/{name}/report")
def report_json(name: Name, request: Request, ctx: ContextDep, looks: Looks = 20) -> dict[str, Any]:
    """Per-arm metrics with confidence intervals and always-valid tests, the sample-ratio check (or,
    for an interleaving, the per-user preference), and their timeline."""
    return _report(name, looks, request, ctx)


@router.get("/{name}/report.html", response_class=HTMLResponse)
def report_html(name: Name, request: Request, ctx: ContextDep, looks: Looks = 20) -> HTMLResponse:
    from services.experiments.html import render

    return HTMLResponse(render(_report(name, looks, request, ctx)))
