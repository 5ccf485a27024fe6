"""In-process online states for the serving tests, built as the worker builds Redis: item upserts and
interactions applied through ``MemoryOnline`` (the worker's own plans)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence

from core.events import Interaction, ItemUpsert
from core.settings import Settings
from feature_store.online.memory_state import MemoryOnline

_ids = itertools.count()


def click(user: str, item: str, ago_s: float = 60.0) -> Interaction:
    return Interaction(event_id=f"ev{next(_ids)}", user_id=user, item_id=item, type="click",  # type: ignore[arg-type]
                       timestamp=time.time() - ago_s)


def memory_state(settings: Settings, categories: Mapping[str, Sequence[str]],
                 events: Sequence[Interaction] = (), state: MemoryOnline | None = None) -> MemoryOnline:
    """``state`` (e.g. a subclass whose reads fail) or a new store, with the catalogue upserted (created
    a day ago) and ``events`` applied."""
    store = state if state is not None else MemoryOnline(settings)
    day_ago = time.time() - 86400
    store.apply_items([ItemUpsert(item_id=i, categories=list(c), created_at=day_ago, timestamp=day_ago)
                       for i, c in categories.items()], {})
    store.apply_interactions(events)
    return store
