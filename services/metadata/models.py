"""SQLAlchemy 2 ORM tables of the lifecycle registry. Times are unix seconds (float), like events.

Schema changes go through an Alembic revision in ``migrations/versions`` (never ``create_all``).
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

MODEL_STATUSES = ("candidate", "active", "retired", "rejected")
JOB_OUTCOMES = ("running", "success", "failed", "skipped")


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class JobRun(Base):
    """One run of a periodic job (train, index, drift, publish) or a recorded load failure."""

    __tablename__ = "job_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job: Mapped[str] = mapped_column(String(64), index=True)
    trigger: Mapped[str] = mapped_column(String(64), default="schedule")
    started_at: Mapped[float] = mapped_column(Float, default=time.time, index=True)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    outcome: Mapped[str] = mapped_column(String(16), default="running")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ModelVersion(Base):
    """A trained model (kind two_tower / ranker) and the promotion decision about it."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("kind", "version", name="uq_model_kind_version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    version: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="candidate", index=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    baseline_metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    data_start: Mapped[float | None] = mapped_column(Float, nullable=True)
    data_end: Mapped[float | None] = mapped_column(Float, nullable=True)
    n_train: Mapped[int] = mapped_column(Integer, default=0)
    checksum: Mapped[str] = mapped_column(String(64), default="")
    parent_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(Float, default=time.time)
    promoted_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    job_run_id: Mapped[int | None] = mapped_column(ForeignKey("job_runs.id"), nullable=True)


class IndexVersion(Base):
    """A FAISS index build: from which two-tower version, how many items, the recall check."""

    __tablename__ = "index_versions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(32), unique=True)
    model_version: Mapped[str] = mapped_column(String(32))
    item_count: Mapped[int] = mapped_column(Integer)
    recall: Mapped[float] = mapped_column(Float)
    recall_sample: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="candidate", index=True)
    checksum: Mapped[str] = mapped_column(String(64), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(Float, default=time.time)
    job_run_id: Mapped[int | None] = mapped_column(ForeignKey("job_runs.id"), nullable=True)


class DriftReport(Base):
    """One drift check: every statistic, which ones crossed their threshold, and what it triggered."""

    __tablename__ = "drift_reports"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[float] = mapped_column(Float, default=time.time, index=True)
    model_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    window_start: Mapped[float | None] = mapped_column(Float, nullable=True)
    window_end: Mapped[float | None] = mapped_column(Float, nullable=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    drifted: Mapped[bool] = mapped_column(Boolean, default=False)
    reasons: Mapped[list[Any]] = mapped_column(JSON, default=list)
    report_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    triggered_job_run_id: Mapped[int | None] = mapped_column(ForeignKey("job_runs.id"), nullable=True)
    job_run_id: Mapped[int | None] = mapped_column(ForeignKey("job_runs.id"), nullable=True)
