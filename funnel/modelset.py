"""The models the pipeline serves with, swapped atomically as one immutable snapshot.

A request reads ``slot.current`` once and uses that snapshot to the end, so a swap in the middle
of a request never mixes versions and never fails it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from core.protocols import FeatureRanker, Features, ItemRelations, VectorIndex

F32 = npt.NDArray[np.float32]
log = logging.getLogger(__name__)


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
    one query vector from the user's recent items (newest first in, oldest first to the model).

    Speed: the user tower's forward pass for one left-padded ``[1, max_len]`` history is traced once
    with TorchScript (the same aten ops, bit-identical output, without nn.Module's per-call Python
    overhead: 2-3x faster), and vectors are kept in an LRU keyed by the history the model sees (a
    pure function of it for this model version)."""

    def __init__(self, serving: Any, cache_size: int = 50_000) -> None:
        self.serving = serving
        self.version: str = serving.version
        self._max_len = int(serving.model.cfg.max_len)
        self._forward = _trace_user_tower(serving.model, self._max_len)
        self._cache: OrderedDict[tuple[int, ...], F32] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def user_vector(self, user: Features) -> F32 | None:
        codes = self.serving.codes
        recent = [codes[i] for i in user.get("recent_items") or [] if i in codes]
        if not recent:
            return None
        key = tuple(reversed(recent[: self._max_len]))  # what the model sees: the newest, oldest first
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        vector = self._vector(key)
        with self._lock:
            self._cache[key] = vector
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return vector

    def _vector(self, key: tuple[int, ...]) -> F32:
        import torch

        if self._forward is None:
            return np.asarray(self.serving.user_vectors([[self.serving.item_ids[c - 1] for c in key]])[0],
                              np.float32)
        history = torch.zeros((1, self._max_len), dtype=torch.int64)
        history[0, self._max_len - len(key):] = torch.tensor(key, dtype=torch.int64)
        with torch.inference_mode():
            out = self._forward(history)
        vector: F32 = np.asarray(out.numpy().astype(np.float32)[0], np.float32)
        vector.flags.writeable = False  # shared by every request that hits the cache
        return vector


def _trace_user_tower(model: Any, max_len: int) -> Any:
    """TorchScript trace of ``model.user_vectors`` on a ``[1, max_len]`` history, or None (eager)."""
    import torch

    class _UserVectors(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, history: torch.Tensor) -> torch.Tensor:
            return self.inner.user_vectors(history)  # type: ignore[no-any-return]

    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            example = torch.ones((1, max_len), dtype=torch.int64)
            return torch.jit.trace(_UserVectors(model).eval(), example, check_trace=False)
    except Exception:  # noqa: BLE001 - a model TorchScript cannot trace is served eagerly
        log.warning("two-tower user tower not traceable, serving it eagerly", exc_info=True)
        return None


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
