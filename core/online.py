"""The read contract of the online state: what the funnel knows about users and items at request time.

The stream worker writes the state (``feature_store.online``); the funnel (``funnel``) reads it through
:class:`OnlineState`. Two implementations ship: Redis (the processes) and an in-process store that the
evaluation and the training job replay events into (``feature_store.online.memory_state``). A contract
test holds them equal on the same events.

Nothing here reads a clock: every time-dependent read takes ``now`` (unix seconds), so a replay at event
time and a live request at wall time run the same code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from core.events import Interaction, ItemUpsert, UserUpsert

F32 = npt.NDArray[np.float32]
Scored = list[tuple[str, float]]
Clock = Callable[[], float]


@dataclass
class UserState:
    """What the funnel knows about a user. ``recent`` (engaged items) is most recent first."""

    user_id: str
    recent: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    n_interactions: int = 0
    segment: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    covisit: Scored | None = None  # neighbours of ``recent``, when the store read them with the user


@dataclass
class ItemInfo:
    item_id: str
    categories: list[str] = field(default_factory=list)
    created_at: float = 0.0
    active: bool = True
    attributes: dict[str, Any] = field(default_factory=dict)
    vector: F32 | None = None


@runtime_checkable
class OnlineState(Protocol):
    """Read-only view of the online state. Real implementations raise ``core.errors.StoreUnavailable``
    within their bounded timeout when the store is down."""

    def user(self, user_id: str) -> UserState: ...

    def popular(self, segment: str | None, k: int, now: float) -> Scored: ...

    def trending(self, segment: str | None, k: int, now: float) -> Scored: ...

    def covisit(self, item_ids: Sequence[str], k: int) -> Scored: ...

    def fresh(self, k: int) -> Scored: ...

    def items(self, item_ids: Sequence[str]) -> list[ItemInfo | None]: ...

    def item_popularity(self, item_ids: Sequence[str], now: float) -> F32: ...

    def posteriors(self, segment: str | None, item_ids: Sequence[str]) -> tuple[F32, F32]: ...

    def ping(self) -> bool: ...


@runtime_checkable
class StateSink(Protocol):
    """Ingests events the way the stream worker does (its plans), for an in-process replay."""

    def apply_interactions(self, events: Sequence[Interaction]) -> int: ...

    def apply_items(self, items: Sequence[ItemUpsert], vectors: Mapping[str, bytes]) -> None: ...

    def apply_users(self, users: Sequence[UserUpsert]) -> None: ...


@runtime_checkable
class ReplayStore(OnlineState, StateSink, Protocol):
    """An online state that a replay writes and the funnel reads (``MemoryOnline``)."""
