"""Offline features: replay the archive through ``feature_store.transforms`` into the batch-source
parquet files of every feature view, and build point-in-time correct training sets with Feast.

``build_offline`` writes one row per event per affected view (the projection right after that event,
stamped with the state's row timestamp), i.e. the exact sequence of rows the worker pushes online.
Feast's point-in-time join then picks, per label, the newest row with ``event_timestamp <= label
time``: never a value stamped after the label.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from feast import FeatureStore
from feast.type_map import feast_value_type_to_pa
from pydantic import ValidationError

from core import features as names
from core.events import Interaction, ItemUpsert, UserUpsert
from core.topics import INTERACTIONS, ITEMS, USERS
from feature_store import transforms as tf
from feature_store.archive import ParquetArchive
from feature_store.repo.definitions import FIELD_TYPES, parquet_path

Rows = dict[str, list[dict[str, Any]]]
log = logging.getLogger(__name__)
_TOPIC_ORDER = {ITEMS: 0, USERS: 1, INTERACTIONS: 2}


def arrow_schema(view: names.ViewNames) -> pa.Schema:
    """The parquet schema of a view, derived from the Feast field types."""
    cols = [(view.join_key, pa.string()), (names.EVENT_TIMESTAMP, pa.timestamp("us", tz="UTC"))]
    cols += [(f, feast_value_type_to_pa(FIELD_TYPES[f].to_value_type())) for f in view.fields]
    return pa.schema(cols)


def write_view(offline_dir: Path, view: names.ViewNames, rows: Sequence[dict[str, Any]]) -> Path:
    path = parquet_path(offline_dir, view.view)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(pa.Table.from_pylist(list(rows), schema=arrow_schema(view)), tmp)
    tmp.replace(path)
    return path


def ensure_sources(offline_dir: Path) -> None:
    """Create empty (schema-only) batch sources so Feast can plan queries before any build."""
    for view in names.ALL_VIEWS:
        if not parquet_path(offline_dir, view.view).exists():
            write_view(offline_dir, view, [])


def _keyed(archive: ParquetArchive, topic: str, end_ts: float | None) -> Iterator[tuple[Any, ...]]:
    for r in archive.iter_events(topic, end_ts=end_ts):
        yield r["timestamp"], _TOPIC_ORDER[topic], r.get("event_id", ""), topic, r


def _merged(archive: ParquetArchive, end_ts: float | None) -> Iterator[tuple[str, dict[str, Any]]]:
    streams = [_keyed(archive, t, end_ts) for t in (ITEMS, USERS, INTERACTIONS)]
    for _, _, _, topic, rec in heapq.merge(*streams, key=lambda x: x[:3]):
        yield topic, rec


class _Replay:
    """The worker's state, rebuilt event by event; collects every projected row."""

    def __init__(self, params: tf.TransformParams) -> None:
        self.params = params
        self.users: dict[str, tf.UserState] = {}
        self.items: dict[str, tf.ItemState] = {}
        self.profiles: dict[str, tf.UserProfileState] = {}
        self.categories: dict[str, list[str]] = {}
        self.rows: Rows = {v.view: [] for v in names.ALL_VIEWS}

    def interaction(self, rec: dict[str, Any]) -> None:
        cats = rec.pop("categories", None)
        ev = Interaction.model_validate(rec)
        cats = self.categories.get(ev.item_id, []) if cats is None else cats
        us = tf.apply_user_event(self.users.setdefault(ev.user_id, tf.UserState(ev.user_id)), ev, cats,
                                 self.params)
        self.rows[names.USER_REALTIME.view].append(tf.project_user_realtime(us))
        self.rows[names.USER_AFFINITY.view].append(tf.project_user_affinity(us, params=self.params))
        it = tf.apply_item_event(self.items.setdefault(ev.item_id, tf.ItemState(ev.item_id)), ev)
        self.rows[names.ITEM_REALTIME.view].append(tf.project_item_realtime(it))
        prof = self.profiles.setdefault(ev.user_id, tf.UserProfileState(ev.user_id))
        self.rows[names.USER_PROFILE.view].append(tf.project_user_profile(tf.apply_profile_event(prof, ev)))

    def item(self, rec: dict[str, Any]) -> None:
        vector = rec.pop("content_vector", None)
        up = ItemUpsert.model_validate(rec)
        self.categories[up.item_id] = list(up.categories)
        self.rows[names.ITEM_META.view].append(tf.project_item_meta(up, vector))
        it = tf.apply_item_upsert(self.items.setdefault(up.item_id, tf.ItemState(up.item_id)), up)
        self.rows[names.ITEM_REALTIME.view].append(tf.project_item_realtime(it))

    def user(self, rec: dict[str, Any]) -> None:
        up = UserUpsert.model_validate(rec)
        prof = self.profiles.setdefault(up.user_id, tf.UserProfileState(up.user_id))
        self.rows[names.USER_PROFILE.view].append(tf.project_user_profile(tf.apply_profile_upsert(prof, up)))


def replay(archive: ParquetArchive, params: tf.TransformParams, end_ts: float | None = None) -> Rows:
    """Every feature row the archived events produce, per view (the worker's pushes, offline)."""
    state = _Replay(params)
    handlers = {INTERACTIONS: state.interaction, ITEMS: state.item, USERS: state.user}
    skipped = 0
    for topic, rec in _merged(archive, end_ts):
        try:
            handlers[topic]({k: v for k, v in rec.items() if not k.startswith("_")})
        except ValidationError as exc:
            skipped += 1
            log.warning("replay skips an archived %s record that no longer validates: %s", topic, exc)
    if skipped:
        log.warning("replay skipped %d archived records", skipped)
    return state.rows


def build_offline(archive: ParquetArchive, offline_dir: Path, params: tf.TransformParams) -> dict[str, int]:
    """Rewrite the batch-source parquet of every view from the archive; returns rows per view."""
    rows = replay(archive, params)
    for view in names.ALL_VIEWS:
        write_view(offline_dir, view, rows[view.view])
    return {view: len(r) for view, r in rows.items()}


def as_utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def _refs(store: FeatureStore, service: str, join_key: str) -> list[str]:
    fs = store.get_feature_service(service)
    return [f"{p.name}:{f.name}" for p in fs.feature_view_projections
            if names.view(p.name).join_key == join_key for f in p.features]


def _utc_us(ts: pd.Series) -> pd.Series:
    """tz-aware UTC at microsecond precision, rounded DOWN (never after the label)."""
    out = pd.to_datetime(ts, unit="s", utc=True) if pd.api.types.is_numeric_dtype(ts) else \
        pd.to_datetime(ts, utc=True)
    return out.dt.floor("us").astype("datetime64[us, UTC]")


def training_set(
    store: FeatureStore, labels: pd.DataFrame, service: str = names.RANKING_SERVICE
) -> pd.DataFrame:
    """Point-in-time features for labelled impressions (Feast ``get_historical_features``).

    Args:
        labels: columns ``user_id, item_id, event_timestamp`` (the impression time: unix seconds or
            datetimes) and ``label`` (plus anything else, passed through).
    Returns: the labels, in order, with every feature of the feature service as of each row's time.

    User and item views are fetched in separate calls on de-duplicated (key, time) rows and joined
    back: Feast 0.67's dask store de-duplicates a mixed-entity join on the first view's keys, which
    would silently drop labels that share (user, time).
    """
    ts = names.EVENT_TIMESTAMP
    out = labels.copy()
    out[ts] = _utc_us(out[ts])
    for join_key in (names.USER_KEY, names.ITEM_KEY):
        refs = _refs(store, service, join_key)
        if not refs:
            continue
        keys = out[[join_key, ts]].drop_duplicates().reset_index(drop=True)
        feats = store.get_historical_features(entity_df=keys, features=refs).to_df()
        feats[ts] = _utc_us(feats[ts])
        out = out.merge(feats, on=[join_key, ts], how="left", validate="many_to_one")
    return out
