"""The Feast objects, named after ``core.features``. Batch sources are parquet files under
``offline_dir`` written by ``feature_store.offline`` from the archive (one file per view).

``definitions(offline_dir)`` builds them; ``feature_store.repository.apply`` registers them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Array, Bool, Float64, Int64, String

from core import features as names

USER = Entity(name=names.USER_ENTITY, join_keys=[names.USER_KEY], value_type=ValueType.STRING,
              description="an end user")
ITEM = Entity(name=names.ITEM_ENTITY, join_keys=[names.ITEM_KEY], value_type=ValueType.STRING,
              description="a recommendable item")

FIELD_TYPES: dict[str, Any] = {
    "segment": String, "lifetime_events": Int64, "lifetime_positives": Int64, "first_seen_ts": Float64,
    "categories": Array(String), "created_at": Float64, "active": Bool, "text_len": Int64,
    "content_vector": Array(Float64),
    "recent_items": Array(String), "history_len": Int64, "last_event_ts": Float64,
    "affinity_categories": Array(String), "affinity_scores": Array(Float64),
    "impressions_1h": Int64, "clicks_1h": Int64, "ctr_1h": Float64, "impressions_24h": Int64,
    "clicks_24h": Int64, "ctr_24h": Float64, "item_age_s": Float64,
}


def parquet_path(offline_dir: Path, view: str) -> Path:
    return Path(offline_dir) / f"{view}.parquet"


def _file_source(offline_dir: Path, view: str) -> FileSource:
    return FileSource(name=f"{view}_batch", path=str(parquet_path(offline_dir, view)),
                      timestamp_field=names.EVENT_TIMESTAMP)


def _view(v: names.ViewNames, offline_dir: Path) -> FeatureView:
    batch = _file_source(offline_dir, v.view)
    source: Any = batch if v.push_source is None else PushSource(name=v.push_source, batch_source=batch)
    entity = USER if v.join_key == names.USER_KEY else ITEM
    return FeatureView(name=v.view, entities=[entity], online=True, source=source,
                       schema=[Field(name=f, dtype=FIELD_TYPES[f]) for f in v.fields],
                       tags={"kind": "stream" if v.push_source else "batch"})


def feature_views(offline_dir: Path) -> dict[str, FeatureView]:
    return {v.view: _view(v, offline_dir) for v in names.ALL_VIEWS}


def feature_services(views: dict[str, FeatureView]) -> list[FeatureService]:
    # The funnel ranks on what the stream keeps fresh (and what the training job's replay computes):
    # the stream views. The batch views stay for offline use and `streamrec features show`.
    ranking = [views[v.view][[f for f in v.fields if f not in names.RANKING_EXCLUDED]]
               for v in names.STREAM_VIEWS]
    retrieval = [views[view][list(fields)] for view, fields in names.RETRIEVAL_FIELDS.items()]
    everything = [views[v.view][[f for f in v.fields if f not in names.RANKING_EXCLUDED]]
                  for v in names.ALL_VIEWS]
    return [FeatureService(name=names.RANKING_SERVICE, features=ranking),
            FeatureService(name=names.ALL_SERVICE, features=everything),
            FeatureService(name=names.RETRIEVAL_SERVICE, features=retrieval)]


def definitions(offline_dir: Path) -> list[Any]:
    """Everything to register: entities, feature views (with their sources), feature services."""
    views = feature_views(offline_dir)
    return [USER, ITEM, *views.values(), *feature_services(views)]
