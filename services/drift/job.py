"""The drift job: reference = the active model's training window, current = the last ``window_s``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import Gauge

from core.settings import Settings
from feature_store.archive import ParquetArchive
from services.drift.monitor import DriftContext, DriftResult, compute_drift
from services.drift.report import ReportData, write_report
from services.metadata import MetadataStore
from services.trainer.data import load_events

log = logging.getLogger(__name__)

DRIFT_STAT = Gauge("streamrec_drift_statistic", "Latest drift statistic vs the training reference", ["stat"])
DRIFT_DETECTED = Gauge("streamrec_drift_detected", "1 when the latest drift check crossed a threshold")
MIN_EVENTS = 200

OnDrift = Callable[[list[str]], int | None]  # reasons -> the job run id it started (or None)


@dataclass
class DriftOutcome:
    report_id: int | None
    result: DriftResult | None
    triggered_run_id: int | None = None
    skipped: str = ""


def _export(result: DriftResult) -> None:
    for check in result.checks:
        DRIFT_STAT.labels(check.name).set(check.value)
    DRIFT_DETECTED.set(1.0 if result.drifted else 0.0)


def _report_path(settings: Settings, now: float) -> Path:
    return settings.data_dir / "drift" / f"drift-{int(now * 1000)}.html"


def _store(settings: Settings, meta: MetadataStore, result: DriftResult, model_version: str,
           now: float, run_id: int) -> int:
    title = f"drift vs model {model_version}"
    rows = [(c.name, c.value, c.threshold, c.crossed) for c in result.checks]
    path = write_report(ReportData(title, rows, result.reasons, result.panels), _report_path(settings, now))
    report = meta.add_drift_report(
        model_version=model_version, window_start=now - settings.drift.window_s, window_end=now,
        metrics=result.metrics, drifted=result.drifted, reasons=result.reasons, report_path=str(path),
        job_run_id=run_id)
    return report.id


def _trigger(meta: MetadataStore, outcome: DriftOutcome, on_drift: OnDrift | None, version: str) -> None:
    assert outcome.result is not None and outcome.report_id is not None
    log.warning("drift detected vs model %s, triggering a retrain: %s", version,
                "; ".join(outcome.result.reasons))
    if on_drift is None:
        return
    outcome.triggered_run_id = on_drift(outcome.result.reasons)
    if outcome.triggered_run_id is not None:
        meta.set_drift_trigger(outcome.report_id, outcome.triggered_run_id)


def run_drift(settings: Settings, meta: MetadataStore, archive: ParquetArchive, ctx: DriftContext,
              on_drift: OnDrift | None = None, now: float | None = None,
              trigger: str = "schedule") -> DriftOutcome:
    """Check drift, store the report (row + HTML), and call ``on_drift`` when a check crossed its line."""
    now = time.time() if now is None else now
    with meta.job("drift", trigger) as run:
        active = meta.active_model("two_tower") or meta.active_model("ranker")
        if active is None or active.data_start is None:
            run.outcome, run.details["reason"] = "skipped", "no active model: no training reference"
            return DriftOutcome(None, None, skipped=run.details["reason"])
        ref = load_events(archive, active.data_start, active.data_end)
        cur = load_events(archive, now - settings.drift.window_s, now)
        if min(len(cur), len(ref)) < MIN_EVENTS:
            run.outcome = "skipped"
            run.details["reason"] = f"too few events (reference {len(ref)}, current {len(cur)})"
            return DriftOutcome(None, None, skipped=run.details["reason"])
        result = compute_drift(ref, cur, ctx, settings.drift)
        _export(result)
        outcome = DriftOutcome(_store(settings, meta, result, active.version, now, run.id), result)
        run.details.update(report_id=outcome.report_id, drifted=result.drifted, reasons=result.reasons)
    if result.drifted:
        _trigger(meta, outcome, on_drift, active.version)
    return outcome
