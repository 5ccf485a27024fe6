"""Register the Feast definitions and load batch views online (``streamrec features apply|materialize``).

Example:
    >>> store = apply(settings)                      # doctest: +SKIP
    >>> materialize(settings, store)                 # doctest: +SKIP
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from feast import FeatureStore

from core import features as names
from core.settings import Settings
from feature_store import transforms as tf
from feature_store.archive import ParquetArchive
from feature_store.config import feature_store, offline_dir
from feature_store.offline import build_offline, ensure_sources
from feature_store.repo.definitions import definitions


def apply(settings: Settings, store: FeatureStore | None = None) -> FeatureStore:
    """Create/refresh entities, feature views and services in the SQL registry; idempotent."""
    fs = store or feature_store(settings)
    out = offline_dir(settings)
    ensure_sources(out)
    fs.apply(definitions(out))
    return fs


def teardown(store: FeatureStore) -> None:
    """Remove THIS project's online data and registry objects (tests, uninstall).

    Not ``FeatureStore.teardown``: in Feast 0.67 that deletes every project of the shared registry.
    """
    views = list(store.list_feature_views(allow_cache=False))
    entities = list(store.list_entities(allow_cache=False))
    store._get_provider().teardown_infra(store.project, views, entities)  # type: ignore[arg-type]
    store.registry.delete_project(store.project)


def materialize(
    settings: Settings, store: FeatureStore | None = None, rebuild: bool = True
) -> dict[str, int]:
    """Rebuild the batch sources from the archive, then load the batch views into Redis."""
    fs = store or feature_store(settings)
    counts: dict[str, int] = {}
    if rebuild:
        archive = ParquetArchive.from_settings(settings)
        counts = build_offline(archive, offline_dir(settings), tf.TransformParams.from_settings(settings))
    end = datetime.fromtimestamp(time.time() + 1, tz=UTC)
    fs.materialize(datetime.fromtimestamp(0, tz=UTC), end, feature_views=[v.view for v in names.BATCH_VIEWS])
    return counts
