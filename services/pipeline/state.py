"""What the pipeline reads from the online state, as one small Protocol, plus an in-process version.

The real implementation (:mod:`services.pipeline.redis_state`) reads the Redis state written by the
stream worker (``feature_store.online``). Every method of a real implementation raises
``core.errors.StoreUnavailable`` within its bounded timeout when the store is down.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
Scored = list[tuple[str, float]]


@dataclass
class UserState:
    """What the pipeline knows about a user. ``recent`` is most recent first."""

    user_id: str
    recent: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    n_interactions: int = 0
    segment: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    covisit: Scored | None = None  # neighbours of ``recent`` when the store read them with the user


@dataclass
class ItemInfo:
    item_id: str
    categories: list[str] = field(default_factory=list)
    created_at: float = 0.0
    active: bool = True
    attributes: dict[str, Any] = field(default_factory=dict)
    vector: F32 | None = None


class OnlineState(Protocol):
    """Read-only view of the online state used by retrieval and exploration."""

    def user(self, user_id: str) -> UserState: ...

    def popular(self, segment: str | None, k: int) -> Scored: ...

    def trending(self, segment: str | None, k: int) -> Scored: ...

    def covisit(self, item_ids: Sequence[str], k: int) -> Scored: ...

    def fresh(self, k: int) -> Scored: ...

    def items(self, item_ids: Sequence[str]) -> list[ItemInfo | None]: ...

    def posteriors(self, segment: str | None, item_ids: Sequence[str]) -> tuple[F32, F32]: ...

    def ping(self) -> bool: ...


def _top(scores: dict[str, float], k: int) -> Scored:
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


@dataclass
class InMemoryState:
    """A dict-backed OnlineState for unit tests, simulations and the bench's in-process mode."""

    users: dict[str, UserState] = field(default_factory=dict)
    popularity: dict[str, dict[str, float]] = field(default_factory=dict)
    covis: dict[str, dict[str, float]] = field(default_factory=dict)
    catalog: dict[str, ItemInfo] = field(default_factory=dict)
    bandit: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    prior: tuple[float, float] = (1.0, 20.0)

    def user(self, user_id: str) -> UserState:
        return self.users.get(user_id) or UserState(user_id)

    def popular(self, segment: str | None, k: int) -> Scored:
        return _top(self.popularity.get(segment or "all") or self.popularity.get("all", {}), k)

    def trending(self, segment: str | None, k: int) -> Scored:
        return []

    def covisit(self, item_ids: Sequence[str], k: int) -> Scored:
        acc: dict[str, float] = {}
        for src in item_ids:
            for other, s in self.covis.get(src, {}).items():
                acc[other] = acc.get(other, 0.0) + s
        return _top(acc, k)

    def fresh(self, k: int) -> Scored:
        newest = sorted(self.catalog.values(), key=lambda it: -it.created_at)[:k]
        return [(it.item_id, it.created_at) for it in newest if it.active]

    def items(self, item_ids: Sequence[str]) -> list[ItemInfo | None]:
        return [self.catalog.get(i) for i in item_ids]

    def posteriors(self, segment: str | None, item_ids: Sequence[str]) -> tuple[F32, F32]:
        table = self.bandit.get(segment or "all", {})
        ab = np.array([table.get(i, self.prior) for i in item_ids], np.float32).reshape(-1, 2)
        return ab[:, 0].copy(), ab[:, 1].copy()

    def ping(self) -> bool:
        return True
