"""The lifecycle registry: job runs, model and index versions, drift reports.

Example:
    >>> meta = MetadataStore("sqlite:///var/metadata.db")       # migrates to head    # doctest: +SKIP
    >>> with meta.job("train", trigger="manual") as run:                              # doctest: +SKIP
    ...     run.details["rows"] = 10
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import create_engine, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.errors import StoreUnavailable
from services.metadata.migrate import upgrade
from services.metadata.models import DriftReport, IndexVersion, JobRun, ModelVersion

log = logging.getLogger(__name__)


@dataclass
class RunHandle:
    """Handed to the body of ``MetadataStore.job``: the run id and details to store at the end."""

    id: int
    details: dict[str, Any] = field(default_factory=dict)
    outcome: str = "success"


class MetadataStore:
    """SQLAlchemy-backed registry. ``migrate=True`` runs the Alembic migrations to head first."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        if migrate:
            upgrade(url)
        args = {"timeout": 30} if url.startswith("sqlite") else {}
        self.engine: Engine = create_engine(url, pool_pre_ping=True, connect_args=args)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as sess, sess.begin():
            yield sess

    def ping(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except Exception as exc:
            raise StoreUnavailable(f"metadata database unreachable: {exc}") from exc

    # -- job runs -------------------------------------------------------------------------
    def start_job(self, job: str, trigger: str = "schedule", details: dict[str, Any] | None = None) -> int:
        with self.session() as s:
            run = JobRun(job=job, trigger=trigger, started_at=time.time(), outcome="running",
                         details=details or {})
            s.add(run)
            s.flush()
            return run.id

    def finish_job(self, run_id: int, outcome: str, error: str | None = None,
                   details: dict[str, Any] | None = None) -> None:
        values: dict[str, Any] = {"outcome": outcome, "ended_at": time.time(), "error": error}
        if details is not None:
            values["details"] = details
        with self.session() as s:
            s.execute(update(JobRun).where(JobRun.id == run_id).values(**values))

    @contextmanager
    def job(self, job: str, trigger: str = "schedule") -> Iterator[RunHandle]:
        """Record a run around the body: success, or failed with the error (then re-raise)."""
        handle = RunHandle(self.start_job(job, trigger))
        try:
            yield handle
        except BaseException as exc:
            self.finish_job(handle.id, "failed", f"{type(exc).__name__}: {exc}", handle.details)
            raise
        self.finish_job(handle.id, handle.outcome, None, handle.details)

    def fail_running(self, since: float, reason: str) -> int:
        """Runs still ``running`` that started after ``since`` -> failed with ``reason``."""
        with self.session() as s:
            res = s.execute(update(JobRun).where(JobRun.outcome == "running", JobRun.started_at >= since)
                            .values(outcome="failed", error=reason, ended_at=time.time()))
            return int(res.rowcount)  # type: ignore[attr-defined]

    def jobs(self, job: str | None = None, limit: int = 50) -> list[JobRun]:
        query = select(JobRun).order_by(JobRun.id.desc()).limit(limit)
        if job is not None:
            query = query.where(JobRun.job == job)
        with self.session() as s:
            return list(s.scalars(query))

    def record_load_failure(self, kind: str, version: str, error: str) -> int:
        """A serving process refused an artifact: a failed ``load_<kind>`` job run."""
        run_id = self.start_job(f"load_{kind}", "loader", {"kind": kind, "version": version})
        self.finish_job(run_id, "failed", error)
        return run_id

    # -- model versions -------------------------------------------------------------------
    def add_model(self, kind: str, version: str, **fields: Any) -> ModelVersion:
        with self.session() as s:
            row = ModelVersion(kind=kind, version=version, created_at=time.time(), **fields)
            s.add(row)
            s.flush()
            return row

    def get_model(self, kind: str, version: str) -> ModelVersion | None:
        with self.session() as s:
            return s.scalar(select(ModelVersion).where(ModelVersion.kind == kind,
                                                       ModelVersion.version == version))

    def active_model(self, kind: str) -> ModelVersion | None:
        with self.session() as s:
            return s.scalar(select(ModelVersion).where(ModelVersion.kind == kind,
                                                       ModelVersion.status == "active"))

    def models(self, kind: str | None = None, limit: int = 100) -> list[ModelVersion]:
        query = select(ModelVersion).order_by(ModelVersion.id.desc()).limit(limit)
        if kind is not None:
            query = query.where(ModelVersion.kind == kind)
        with self.session() as s:
            return list(s.scalars(query))

    def promote_model(self, kind: str, version: str, reason: str = "") -> None:
        """Make ``version`` the single active one of its kind; the previous active is retired."""
        with self.session() as s:
            s.execute(update(ModelVersion).where(ModelVersion.kind == kind, ModelVersion.status == "active",
                                                 ModelVersion.version != version).values(status="retired"))
            done = s.execute(update(ModelVersion).where(ModelVersion.kind == kind,
                                                        ModelVersion.version == version)
                             .values(status="active", promoted_at=time.time(), reason=reason))
            if done.rowcount != 1:  # type: ignore[attr-defined]
                raise KeyError(f"no {kind} model version {version} in the registry")

    def previous_active(self, kind: str) -> ModelVersion | None:
        """The most recently promoted version that is no longer active (the rollback target)."""
        with self.session() as s:
            return s.scalar(select(ModelVersion).where(
                ModelVersion.kind == kind, ModelVersion.status == "retired",
                ModelVersion.promoted_at.is_not(None)).order_by(ModelVersion.promoted_at.desc()).limit(1))

    def reject_model(self, kind: str, version: str, reason: str) -> None:
        with self.session() as s:
            s.execute(update(ModelVersion).where(ModelVersion.kind == kind, ModelVersion.version == version)
                      .values(status="rejected", reason=reason))

    # -- index versions -------------------------------------------------------------------
    def add_index(self, version: str, **fields: Any) -> IndexVersion:
        with self.session() as s:
            row = IndexVersion(version=version, created_at=time.time(), **fields)
            s.add(row)
            s.flush()
            return row

    def activate_index(self, version: str, reason: str = "") -> None:
        with self.session() as s:
            s.execute(update(IndexVersion).where(IndexVersion.status == "active",
                                                 IndexVersion.version != version).values(status="retired"))
            s.execute(update(IndexVersion).where(IndexVersion.version == version)
                      .values(status="active", reason=reason))

    def reject_index(self, version: str, reason: str) -> None:
        with self.session() as s:
            s.execute(update(IndexVersion).where(IndexVersion.version == version)
                      .values(status="rejected", reason=reason))

    def active_index(self) -> IndexVersion | None:
        with self.session() as s:
            return s.scalar(select(IndexVersion).where(IndexVersion.status == "active"))

    def indexes(self, limit: int = 100) -> list[IndexVersion]:
        with self.session() as s:
            return list(s.scalars(select(IndexVersion).order_by(IndexVersion.id.desc()).limit(limit)))

    # -- drift reports --------------------------------------------------------------------
    def add_drift_report(self, **fields: Any) -> DriftReport:
        with self.session() as s:
            row = DriftReport(created_at=time.time(), **fields)
            s.add(row)
            s.flush()
            return row

    def set_drift_trigger(self, report_id: int, job_run_id: int) -> None:
        with self.session() as s:
            s.execute(update(DriftReport).where(DriftReport.id == report_id)
                      .values(triggered_job_run_id=job_run_id))

    def drift_reports(self, limit: int = 100) -> list[DriftReport]:
        with self.session() as s:
            return list(s.scalars(select(DriftReport).order_by(DriftReport.id.desc()).limit(limit)))
