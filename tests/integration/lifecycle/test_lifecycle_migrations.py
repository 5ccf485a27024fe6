"""Alembic upgrade and downgrade of the lifecycle registry, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

import services.metadata.access  # noqa: F401 - registers the control-plane tables on Base
from services.metadata import MetadataStore, current_revision, downgrade, head_revision, upgrade
from services.metadata.models import Base
from tests.conftest import PG_URL, pg_schema

TABLES = {"job_runs", "model_versions", "index_versions", "drift_reports",  # 0001: the lifecycle registry
          "tenants", "api_keys", "deletion_requests"}  # 0002: the control plane (services.metadata.access)


def _pg_available() -> bool:
    try:
        engine = create_engine(PG_URL)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'meta.db'}"
        return
    if not _pg_available():
        pytest.fail(f"PostgreSQL at {PG_URL} is not reachable")
    with pg_schema("lc") as url:
        yield url


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_matches_models_and_downgrade_removes_everything(db_url: str) -> None:
    upgrade(db_url)
    assert current_revision(db_url) == head_revision() == "0002"
    assert _tables(db_url) == TABLES
    engine = create_engine(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == [], f"ORM models and migrations disagree: {diff}"
    downgrade(db_url, "base")
    assert current_revision(db_url) is None
    assert _tables(db_url) == set()
    upgrade(db_url)  # and back up again: downgrade left nothing behind that blocks it
    assert _tables(db_url) == TABLES


def test_registry_roundtrip_after_migration(db_url: str) -> None:
    meta = MetadataStore(db_url)
    try:
        with meta.job("train", trigger="manual") as run:
            meta.add_model("ranker", "000001", metrics={"auc": 0.7}, job_run_id=run.id)
            meta.add_model("ranker", "000002", metrics={"auc": 0.8}, job_run_id=run.id)
            meta.promote_model("ranker", "000001")
            meta.promote_model("ranker", "000002", reason="better")
        with pytest.raises(RuntimeError), meta.job("index"):
            raise RuntimeError("boom")
        statuses = {m.version: m.status for m in meta.models("ranker")}
        assert statuses == {"000001": "retired", "000002": "active"}
        assert meta.active_model("ranker").metrics == {"auc": 0.8}
        runs = {r.job: (r.outcome, r.error) for r in meta.jobs()}
        assert runs == {"train": ("success", None), "index": ("failed", "RuntimeError: boom")}
    finally:
        meta.close()
