"""In-process online states built the way the stream worker builds Redis: item upserts, user upserts and
interactions applied through ``MemoryOnline`` (the worker's own plans), never hand-filled dicts."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence

from core.events import Interaction, ItemUpsert, UserUpsert
from core.settings import Settings
from feature_store.online.memory_state import MemoryOnline

NOW = 1_700_000_000.0
_ids = itertools.count()


def click(user: str, item: str, ts: float = NOW - 60, kind: str = "click", **context: str) -> Interaction:
    return Interaction(event_id=f"ev{next(_ids)}", user_id=user, item_id=item, type=kind,  # type: ignore[arg-type]
                       timestamp=ts, context=context)


def catalog(categories: Mapping[str, Sequence[str]]) -> list[ItemUpsert]:
    """One upsert per item, created a day before NOW, each a second newer than the one before."""
    return [ItemUpsert(item_id=i, categories=list(cats), created_at=NOW - 86400 + j, timestamp=NOW - 86400)
            for j, (i, cats) in enumerate(categories.items())]


def crowd(counts: Mapping[str, int], prefix: str = "crowd", **context: str) -> list[Interaction]:
    """``counts[item]`` clicks on each item, each from a user of its own (popularity, no co-visitation)."""
    return [click(f"{prefix}-{item}-{k}", item, **context) for item, n in counts.items() for k in range(n)]


def memory_state(settings: Settings, items: Sequence[ItemUpsert], events: Iterable[Interaction] = (),
                 users: Sequence[UserUpsert] = (), vectors: Mapping[str, bytes] | None = None,
                 state: MemoryOnline | None = None) -> MemoryOnline:
    """``state`` (a subclass, e.g. one whose reads fail) or a new store, with the items, users and events
    applied in that order, in the worker's batch size."""
    store = state if state is not None else MemoryOnline(settings)
    store.apply_items(items, vectors or {})
    store.apply_users(users)
    batch = list(events)
    for start in range(0, len(batch), 500):
        store.apply_interactions(batch[start:start + 500])
    return store
