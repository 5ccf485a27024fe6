"""Models, indexes and drift from the lifecycle registry (``services.metadata``), and the two admin
actions on it: promote and roll back, through ``services.trainer.promotion`` as the CLI does."""

from __future__ import annotations

import json
import logging
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from core.settings import Settings
from services.metadata import MetadataStore
from services.metadata.models import DriftReport, IndexVersion, JobRun, ModelVersion

log = logging.getLogger(__name__)
COUNT_KEYS = ("reference_events", "current_events", "reference_users", "current_users")


@dataclass
class ModelsView:
    kinds: dict[str, list[ModelVersion]] = field(default_factory=dict)  # newest first
    indexes: list[IndexVersion] = field(default_factory=list)
    rollback_to: dict[str, str] = field(default_factory=dict)  # kind -> version a rollback re-activates
    serving: dict[str, str] = field(default_factory=dict)  # what this API process has loaded


def models_view(meta: MetadataStore, serving: dict[str, str], limit: int = 50) -> ModelsView:
    out = ModelsView(serving=serving)
    for row in meta.models(limit=limit * 4):
        out.kinds.setdefault(row.kind, []).append(row)
    for kind in out.kinds:
        out.kinds[kind] = out.kinds[kind][:limit]
        previous = meta.previous_active(kind)
        if previous is not None:
            out.rollback_to[kind] = previous.version
    out.indexes = meta.indexes(limit)
    return out


def gate(row: ModelVersion) -> str:
    """The gate's decision in words: promoted, rejected (with why), or waiting."""
    if row.status == "rejected":
        return "rejected"
    if row.promoted_at is not None:
        return "promoted"
    return "candidate" if row.status == "candidate" else row.status


@dataclass
class DriftView:
    reports: list[DriftReport] = field(default_factory=list)  # newest first
    runs: dict[int, JobRun] = field(default_factory=dict)  # the retrains the reports triggered
    stats: list[str] = field(default_factory=list)  # the statistics' names, in a stable order


def drift_view(meta: MetadataStore, limit: int = 200) -> DriftView:
    reports = meta.drift_reports(limit)
    runs = {r.id: r for r in meta.jobs("train", limit=limit)}
    stats = sorted({k for r in reports for k, v in r.metrics.items()
                    if k not in COUNT_KEYS and isinstance(v, int | float)})
    return DriftView(reports, runs, stats)


def moved(report: DriftReport) -> list[str]:
    """The statistics that crossed their threshold (the report's reasons name them first)."""
    return [str(r).split(" = ", 1)[0] for r in report.reasons]


# ---- admin actions ------------------------------------------------------------------------------
def promote_version(settings: Settings, meta: MetadataStore, kind: str, version: str, who: str) -> str:
    from services.artifacts import open_store, parse_version
    from services.trainer.promotion import promote

    version = f"{parse_version(version):06d}"
    if meta.get_model(kind, version) is None:
        raise KeyError(f"no {kind} version {version} in the registry")
    promote(open_store(settings.artifacts_url), meta, kind, version, f"console promote by {who}")
    return _after(settings, kind, version)


def rollback_kind(settings: Settings, meta: MetadataStore, kind: str, who: str) -> str:
    from services.artifacts import open_store
    from services.trainer.promotion import rollback

    version = rollback(open_store(settings.artifacts_url), meta, kind)
    log.warning("console: %s rolled back to %s by %s", kind, version, who)
    return _after(settings, kind, version)


def _after(settings: Settings, kind: str, version: str) -> str:
    """What to tell the operator; a new two-tower needs its index rebuilt (asked of the scheduler)."""
    done = f"{kind} {version} is active; serving processes swap to it within " \
           f"{settings.artifacts.poll_interval_s:g} s"
    if kind != "two_tower":
        return done
    return f"{done}. {_reindex(settings)}"


def _reindex(settings: Settings) -> str:
    port = settings.scheduler.admin_port
    if not port:
        return "Rebuild its index: `streamrec index` (scheduler.admin_port is not set)."
    url = f"http://127.0.0.1:{port}/jobs/index/run"
    try:
        req = urllib.request.Request(url, method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=settings.console.timeout_s) as resp:  # noqa: S310
            body = json.loads(resp.read() or b"{}")
        return f"Index rebuild started by the scheduler ({body.get('status', resp.status)})."
    except (OSError, ValueError) as exc:
        return f"Rebuild its index: `streamrec index` (the scheduler did not take it: {exc})."


def summary(row: ModelVersion) -> dict[str, Any]:
    return {"kind": row.kind, "version": row.version, "status": row.status, "metrics": row.metrics,
            "baseline": row.baseline_metrics, "reason": row.reason, "created_at": row.created_at,
            "promoted_at": row.promoted_at}
