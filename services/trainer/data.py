"""Training and monitoring data from the event archive (the offline log of record).

``load_events`` returns the interactions of a time window as a DataFrame; ``load_catalogue`` the
latest upsert of every item seen up to a time (new items included). ``time_split`` cuts a recent
holdout by time (never by random rows: the holdout must be the future of the training data).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from core.events import POSITIVE_TYPES, ItemUpsert, UserUpsert
from core.topics import IMPRESSIONS, INTERACTIONS, ITEMS, USERS
from feature_store.archive import ParquetArchive
from funnel.log import Catalog
from models.content import ContentConfig, ContentEncoder, item_text

EVENT_COLUMNS = ["event_id", "user_id", "item_id", "type", "value", "timestamp", "device",
                 "feed_id", "position"]
POSITIVE = frozenset(str(t) for t in POSITIVE_TYPES)


def events_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    rows = [(r.get("event_id", ""), r["user_id"], r["item_id"], str(r["type"]), float(r.get("value", 1.0)),
             float(r["timestamp"]), (r.get("context") or {}).get("device", ""), r.get("feed_id"),
             r.get("position")) for r in records]
    df = pd.DataFrame(rows, columns=EVENT_COLUMNS)
    df["positive"] = df["type"].isin(POSITIVE)
    return df


def load_events(archive: ParquetArchive, start: float | None = None, end: float | None = None,
                topic: str = INTERACTIONS) -> pd.DataFrame:
    """Interactions with ``start <= timestamp <= end``, in (timestamp, event_id) order."""
    return events_frame(archive.iter_events(topic, start, end))


def load_impressions(archive: ParquetArchive, start: float | None = None,
                     end: float | None = None) -> pd.DataFrame:
    """The impression log (one record per served feed) flattened to one row per shown item."""
    rows = []
    for rec in archive.iter_events(IMPRESSIONS, start, end):
        items = rec.get("items") or rec.get("item_ids") or []
        for pos, item in enumerate(items):
            item_id = item["item_id"] if isinstance(item, dict) else str(item)
            rows.append((rec.get("feed_id"), rec.get("user_id"), item_id, pos, float(rec["timestamp"])))
    return pd.DataFrame(rows, columns=["feed_id", "user_id", "item_id", "position", "timestamp"])


@dataclass
class Catalogue:
    """The current items: ids, text, categories, created_at, active (aligned lists)."""

    item_ids: list[str]
    texts: list[str]
    categories: list[list[str]]
    created_at: list[float]
    active: list[bool]

    def __len__(self) -> int:
        return len(self.item_ids)

    def primary_category(self) -> dict[str, str]:
        return {i: (c[0] if c else "") for i, c in zip(self.item_ids, self.categories, strict=True)}

    def subset(self, keep: Iterable[str]) -> Catalogue:
        wanted = set(keep)
        idx = [j for j, i in enumerate(self.item_ids) if i in wanted]
        return Catalogue([self.item_ids[j] for j in idx], [self.texts[j] for j in idx],
                         [self.categories[j] for j in idx], [self.created_at[j] for j in idx],
                         [self.active[j] for j in idx])


def load_catalogue(archive: ParquetArchive, end: float | None = None, active_only: bool = True) -> Catalogue:
    latest: dict[str, dict[str, Any]] = {}
    for rec in archive.iter_events(ITEMS, None, end):
        latest[rec["item_id"]] = rec  # iter_events is time-ordered: the last upsert wins
    recs = [r for r in latest.values() if r.get("active", True) or not active_only]
    recs.sort(key=lambda r: r["item_id"])
    return Catalogue([r["item_id"] for r in recs],
                     [item_text(r.get("title", ""), r.get("text", "")) for r in recs],
                     [list(r.get("categories") or []) for r in recs],
                     [float(r.get("created_at", 0.0)) for r in recs],
                     [bool(r.get("active", True)) for r in recs])


def time_split(df: pd.DataFrame, holdout_fraction: float) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """Train = events before the cut time, holdout = the most recent ``holdout_fraction`` of events."""
    if df.empty:
        return df, df, 0.0
    cut = float(np.quantile(df["timestamp"].to_numpy(), 1.0 - holdout_fraction))
    return df[df["timestamp"] < cut], df[df["timestamp"] >= cut], cut


def ctr(df: pd.DataFrame) -> float:
    impressions = int((df["type"] == "impression").sum())
    clicks = int((df["type"] == "click").sum())
    return clicks / impressions if impressions else 0.0


def training_catalog(archive: ParquetArchive, end: float, use_model: bool) -> Catalog:
    """The items (latest upsert of each, as of ``end``) and users for the training job, with the
    content vectors the worker's encoder gives them (``models.content.item_text`` + categories)."""
    latest: dict[str, dict[str, Any]] = {}
    for rec in archive.iter_events(ITEMS, None, end):
        latest[rec["item_id"]] = rec
    items = [_record(ItemUpsert, r) for r in latest.values() if r.get("active", True)]
    users_latest: dict[str, dict[str, Any]] = {}
    for rec in archive.iter_events(USERS, None, end):
        users_latest[rec["user_id"]] = rec
    users = [_record(UserUpsert, r) for r in users_latest.values()]
    if not items:
        return Catalog([], None, users)
    encoder = ContentEncoder(ContentConfig(use_model=use_model))
    vectors = encoder.encode([item_text(it.title, it.text) for it in items],
                             [list(it.categories) for it in items])
    return Catalog(items, vectors, users)


R = TypeVar("R", ItemUpsert, UserUpsert)


def _record(model: type[R], archived: dict[str, Any]) -> R:
    """The upsert back from its archived row (the archive adds bookkeeping such as ``_offset``)."""
    return model.model_validate({k: v for k, v in archived.items() if k in model.model_fields})
