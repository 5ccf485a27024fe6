"""The event log the training job and the evaluation read: columnar, time-ordered, cheap to slice.

``EventLog`` holds interactions as numpy columns (a million events cost tens of MB, not the GB that
as many pydantic records would); :meth:`EventLog.interactions` builds the records of a slice when a
replay feeds them to the store. ``Catalog`` holds the item upserts and their content vectors.

Builders: :meth:`EventLog.from_frame` (the archive's DataFrame, ``services.trainer.data``) and
:meth:`EventLog.from_ratings` (a dataset such as MovieLens: every rating is an implicit positive,
``like`` at or above ``like_threshold`` when ratings carry that information, else ``click``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from core.events import (
    DEEP_TYPES,
    LONG_DWELL_SECONDS,
    POSITIVE_TYPES,
    Interaction,
    InteractionType,
    ItemUpsert,
    UserUpsert,
)
from core.online import F32

Objects = npt.NDArray[np.object_]
POSITIVE = frozenset(str(t) for t in POSITIVE_TYPES)
DEEP = frozenset(str(t) for t in DEEP_TYPES)
_TYPES = {str(t): t for t in InteractionType}


@dataclass
class EventLog:
    """Interactions in (timestamp, input order) order. ``position`` is -1 and ``feed_id`` None when the
    event did not come from a served feed; ``propensity`` NaN when unknown; ``device`` "" when absent."""

    event_id: Objects
    user: Objects
    item: Objects
    type: Objects
    value: npt.NDArray[np.float64]
    ts: npt.NDArray[np.float64]
    feed_id: Objects
    position: npt.NDArray[np.int64]
    device: Objects
    propensity: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        if len(self.propensity) != len(self.ts):
            self.propensity = np.full(len(self.ts), np.nan)

    def __len__(self) -> int:
        return len(self.ts)

    @classmethod
    def build(cls, columns: dict[str, Any]) -> EventLog:
        """From unsorted columns (names as the fields); sorts by time, stable."""
        order = np.argsort(np.asarray(columns["ts"], np.float64), kind="stable")
        n = len(order)
        col = {k: np.asarray(v)[order] for k, v in columns.items()}
        obj = {k: np.asarray(col.get(k, default), dtype=object) for k, default in
               (("feed_id", [None] * n), ("device", [""] * n))}
        return cls(np.asarray(col["event_id"], object), np.asarray(col["user"], object),
                   np.asarray(col["item"], object), np.asarray(col["type"], object),
                   np.asarray(col["value"], np.float64), np.asarray(col["ts"], np.float64), obj["feed_id"],
                   np.asarray(col.get("position", np.full(n, -1)), np.int64), obj["device"],
                   np.asarray(col.get("propensity", np.full(n, np.nan)), np.float64))

    @classmethod
    def from_frame(cls, df: Any) -> EventLog:
        """The archive's frame (``event_id, user_id, item_id, type, value, timestamp, device, feed_id,
        position``)."""
        pos = df["position"].astype(float).fillna(-1).astype(np.int64).to_numpy() if "position" in df \
            else None
        feeds = [None if f is None or f != f else str(f) for f in df["feed_id"]] if "feed_id" in df else None
        cols: dict[str, Any] = {
            "event_id": df["event_id"].astype(str).to_numpy(), "user": df["user_id"].astype(str).to_numpy(),
            "item": df["item_id"].astype(str).to_numpy(), "type": df["type"].astype(str).to_numpy(),
            "value": df["value"].to_numpy(np.float64), "ts": df["timestamp"].to_numpy(np.float64),
            "device": df["device"].fillna("").astype(str).to_numpy() if "device" in df else None}
        if feeds is not None:
            cols["feed_id"] = feeds
        if pos is not None:
            cols["position"] = pos
        return cls.build({k: v for k, v in cols.items() if v is not None})

    @classmethod
    def from_ratings(cls, users: Sequence[str], items: Sequence[str], ts: npt.ArrayLike,
                     weights: npt.ArrayLike, like_threshold: float | None, prefix: str = "r") -> EventLog:
        w = np.asarray(weights, np.float64)
        deep = w >= like_threshold if like_threshold is not None else np.zeros(len(w), bool)
        kinds = np.where(deep, "like", "click").astype(object)
        ids = np.array([f"{prefix}{j}" for j in range(len(w))], dtype=object)
        return cls.build({"event_id": ids, "user": np.asarray(users, object),
                          "item": np.asarray(items, object), "type": kinds, "value": np.ones(len(w)),
                          "ts": np.asarray(ts, np.float64)})

    def positive(self) -> npt.NDArray[np.bool_]:
        return np.isin(self.type, list(POSITIVE))

    def deep(self) -> npt.NDArray[np.bool_]:
        long_dwell = (self.type == "dwell") & (self.value >= LONG_DWELL_SECONDS)
        return np.isin(self.type, list(DEEP)) | long_dwell

    def subset(self, mask: npt.NDArray[np.bool_]) -> EventLog:
        return EventLog(self.event_id[mask], self.user[mask], self.item[mask], self.type[mask],
                        self.value[mask], self.ts[mask], self.feed_id[mask], self.position[mask],
                        self.device[mask], self.propensity[mask])

    def interactions(self, start: int, stop: int) -> list[Interaction]:
        """Records of rows [start, stop), built without re-validation (the columns are typed)."""
        out = []
        for j in range(start, stop):
            feed, pos, prop = self.feed_id[j], int(self.position[j]), float(self.propensity[j])
            out.append(Interaction.model_construct(
                event_id=self.event_id[j], user_id=self.user[j], item_id=self.item[j],
                type=_TYPES[self.type[j]], value=float(self.value[j]), timestamp=float(self.ts[j]),
                context={"device": self.device[j]} if self.device[j] else {}, feed_id=feed,
                position=pos if pos >= 0 else None, propensity=prop if prop == prop else None))
        return out


@dataclass
class Catalog:
    """Item upserts in timestamp order, their content vectors (aligned rows), and user upserts."""

    items: list[ItemUpsert]
    vectors: F32 | None = None
    users: list[UserUpsert] = field(default_factory=list)

    @property
    def item_ids(self) -> list[str]:
        return [it.item_id for it in self.items]

    def vector_bytes(self) -> dict[str, bytes]:
        if self.vectors is None:
            return {}
        vecs = np.asarray(self.vectors, np.float32)
        return {it.item_id: vecs[j].tobytes() for j, it in enumerate(self.items)}
