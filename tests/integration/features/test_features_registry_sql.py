"""The Feast SQL registry on SQLite and on PostgreSQL: apply, shared by a second process-like store,
idempotent re-apply, per-project teardown that leaves other projects alone."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from core import features as names
from core.settings import Settings, load_settings
from feature_store.config import feature_store
from feature_store.repository import apply, teardown
from tests.conftest import PG_URL

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_registry_url() -> Iterator[str]:
    schema = f"feast_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(PG_URL)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as exc:  # pragma: no cover - environment problem, say so
        pytest.fail(f"PostgreSQL at {PG_URL} unreachable: {exc}")
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def _settings(tmp: Path, redis_url: str, registry_url: str | None) -> Settings:
    return load_settings(data_dir=str(tmp), redis={"url": redis_url},
                         feast={"project": f"f{uuid.uuid4().hex[:10]}", "registry_url": registry_url})


def _check_registry(tmp: Path, redis_url: str, registry_url: str | None) -> None:
    a = _settings(tmp / "a", redis_url, registry_url)
    b = a.model_copy(update={"feast": a.feast.model_copy(update={"project": a.feast.project + "b"})})
    store_a, store_b = apply(a), apply(b)
    apply(a)  # idempotent
    other = feature_store(a)  # a second store (another process) sees the same registry
    assert {v.name for v in other.list_feature_views()} == {v.view for v in names.ALL_VIEWS}
    assert {s.name for s in other.list_feature_services()} == {names.RANKING_SERVICE, names.RETRIEVAL_SERVICE,
                                                                names.ALL_SERVICE}
    push = {v.stream_source.name for v in other.list_feature_views() if v.stream_source is not None}
    assert push == {v.push_source for v in names.STREAM_VIEWS}
    teardown(store_a)
    assert list(feature_store(a).list_feature_views(allow_cache=False)) == []
    assert len(list(feature_store(b).list_feature_views(allow_cache=False))) == len(names.ALL_VIEWS)
    teardown(store_b)


def test_registry_on_sqlite(tmp_path: Path, redis_url: str):
    _check_registry(tmp_path, redis_url, None)
    assert (tmp_path / "a" / "feast_registry.db").is_file()


@pytest.mark.postgres
def test_registry_on_postgresql(tmp_path: Path, redis_url: str, pg_registry_url: str):
    _check_registry(tmp_path, redis_url, pg_registry_url)
