"""A small synthetic event stream run through the real path (transforms -> writer -> Feast online,
archive -> offline parquet -> materialize). Used by the features benchmark and tests.

Example:
    >>> stream = make_stream(n_users=5, n_items=50, n_events=500, end_ts=1.7e9)
    >>> len(stream.interactions)
    500
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from core import features as names
from core.events import Interaction, InteractionType, ItemUpsert, UserUpsert
from core.topics import INTERACTIONS, ITEMS, USERS
from feature_store import transforms as tf
from feature_store.archive import ParquetArchive
from feature_store.writer import FeatureWriter

CATEGORIES = ("news", "sport", "music", "film", "tech", "food", "travel", "games")
_TYPES = (InteractionType.IMPRESSION,) * 6 + (InteractionType.CLICK,) * 3 + (InteractionType.LIKE,)


@dataclass
class Stream:
    items: list[ItemUpsert]
    users: list[UserUpsert]
    interactions: list[Interaction]
    categories: dict[str, list[str]] = field(default_factory=dict)


def make_stream(n_users: int, n_items: int, n_events: int, end_ts: float, seed: int = 0,
                span_s: float = 7200.0) -> Stream:
    """Items and users created before ``end_ts - span_s``; interactions spread over the span."""
    rng = random.Random(seed)
    t0 = end_ts - span_s
    items = [ItemUpsert(item_id=f"i{k}", title=f"item {k}", categories=rng.sample(CATEGORIES, 2),
                        created_at=t0 - rng.uniform(0, 86400), timestamp=t0 - 10 + k * 1e-3)
             for k in range(n_items)]
    users = [UserUpsert(user_id=f"u{k}", segment=rng.choice(("mobile", "web")), timestamp=t0 - 5)
             for k in range(n_users)]
    times = sorted(rng.uniform(t0, end_ts) for _ in range(n_events))
    evs = [Interaction(event_id=f"e{k}", user_id=f"u{rng.randrange(n_users)}",
                       item_id=f"i{rng.randrange(n_items)}", type=rng.choice(_TYPES), timestamp=ts)
           for k, ts in enumerate(times)]
    return Stream(items, users, evs, {it.item_id: list(it.categories) for it in items})


class StreamApplier:
    """What the worker does per micro-batch, in-process: states, archive, projections, pushes."""

    def __init__(self, writer: FeatureWriter, archive: ParquetArchive, params: tf.TransformParams) -> None:
        self.writer, self.archive, self.params = writer, archive, params
        self.users: dict[str, tf.UserState] = {}
        self.items: dict[str, tf.ItemState] = {}
        self.catalog: dict[str, list[str]] = {}
        self._offset = 0

    def _archive(self, topic: str, records: list[dict[str, object]]) -> None:
        first, self._offset = self._offset, self._offset + len(records)
        self.archive.append(topic, records, partition=0, first_offset=first, last_offset=self._offset - 1)

    def upserts(self, items: list[ItemUpsert], users: list[UserUpsert]) -> None:
        self._archive(ITEMS, [it.model_dump() for it in items])
        self._archive(USERS, [u.model_dump() for u in users])
        for it in items:
            self.catalog[it.item_id] = list(it.categories)
            st = tf.apply_item_upsert(self.items.setdefault(it.item_id, tf.ItemState(it.item_id)), it)
            self.writer.push(names.ITEM_REALTIME.view, [tf.project_item_realtime(st)])
        self.writer.flush()

    def batch(self, events: list[Interaction]) -> None:
        """Apply, archive and push one micro-batch; durable when this returns."""
        touched_u: set[str] = set()
        touched_i: set[str] = set()
        for ev in events:
            cats = self.catalog.get(ev.item_id, [])
            tf.apply_user_event(self.users.setdefault(ev.user_id, tf.UserState(ev.user_id)), ev, cats,
                                self.params)
            tf.apply_item_event(self.items.setdefault(ev.item_id, tf.ItemState(ev.item_id)), ev)
            touched_u.add(ev.user_id)
            touched_i.add(ev.item_id)
        self._archive(INTERACTIONS, [dict(ev.model_dump(), categories=self.catalog.get(ev.item_id, []))
                                     for ev in events])
        users = [self.users[u] for u in sorted(touched_u)]
        items = [self.items[i] for i in sorted(touched_i)]
        self.writer.push(names.USER_REALTIME.view, [tf.project_user_realtime(u) for u in users])
        p = self.params
        self.writer.push(names.USER_AFFINITY.view, [tf.project_user_affinity(u, params=p) for u in users])
        self.writer.push(names.ITEM_REALTIME.view, [tf.project_item_realtime(i) for i in items])
        self.writer.flush()
