"""The models the pipeline serves with, swapped atomically as one immutable snapshot.

A request reads ``slot.current`` once and uses that snapshot to the end, so a swap in the middle
of a request never mixes versions and never fails it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from core.protocols import FeatureRanker, Features, ItemRelations, VectorIndex

F32 = npt.NDArray[np.float32]


@runtime_checkable
class UserTower(Protocol):
    """The user side of the two-tower model: one query vector per user (None = cannot encode)."""

    version: str

    def user_vector(self, user: Features) -> F32 | None: ...


@dataclass(frozen=True)
class ModelSet:
    ranker: FeatureRanker | None = None
    index: VectorIndex | None = None
    user_tower: UserTower | None = None
    neighbours: ItemRelations | None = None
    missing: tuple[str, ...] = ()  # kinds that are promoted in the store but could not be loaded

    @property
    def model_version(self) -> str:
        return getattr(self.ranker, "version", None) or "none"

    @property
    def index_version(self) -> str:
        return getattr(self.index, "version", None) or "none"

    @property
    def degraded(self) -> bool:
        return bool(self.missing)


class ModelSlot:
    """Holds the current :class:`ModelSet`; ``swap`` replaces one part atomically."""

    def __init__(self, initial: ModelSet | None = None) -> None:
        self._current = initial or ModelSet()
        self._lock = threading.Lock()

    @property
    def current(self) -> ModelSet:
        return self._current

    def swap(self, **parts: Any) -> ModelSet:
        with self._lock:
            self._current = replace(self._current, **parts)
            return self._current


class TwoTowerQuery:
    """``UserTower`` over a two-tower serving wrapper (``models.two_tower_serving.TwoTowerServing``):
    one query vector from the user's recent items (newest first in, oldest first to the model)."""

    def __init__(self, serving: Any) -> None:
        self.serving = serving
        self.version: str = serving.version

    def user_vector(self, user: Features) -> F32 | None:
        recent = [i for i in user.get("recent_items") or [] if i in self.serving.codes]
        if not recent:
            return None
        return np.asarray(self.serving.user_vectors([list(reversed(recent))])[0], np.float32)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread for small per-request forward passes: intra-op threads only add spin-waits
    for a [1, 50, 64] sequence, and collapse under a loaded CPU (100x slower measured here)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
