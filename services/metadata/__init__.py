"""Lifecycle registry (SQLAlchemy 2 + Alembic migrations shipped in ``migrations/``)."""

from services.metadata.migrate import current_revision, downgrade, head_revision, upgrade
from services.metadata.models import DriftReport, IndexVersion, JobRun, ModelVersion
from services.metadata.store import MetadataStore, RunHandle

__all__ = [
    "DriftReport",
    "IndexVersion",
    "JobRun",
    "MetadataStore",
    "ModelVersion",
    "RunHandle",
    "current_revision",
    "downgrade",
    "head_revision",
    "upgrade",
]
