"""The seams between layers. Implementations import these; nothing here imports them.

Every Protocol has a cheap in-process implementation for unit tests and a real one
(Redis, Feast, FAISS, Kafka, a directory or S3), exercised by the same contract tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from core.events import Feed

FloatArray = npt.NDArray[np.float32]
Features = dict[str, Any]


@runtime_checkable
class FeatureReader(Protocol):
    """Online features for one request. Raises core.errors.StoreUnavailable within its timeout."""

    def user_features(self, user_id: str) -> Features: ...

    def item_features(self, item_ids: Sequence[str]) -> list[Features]: ...


@runtime_checkable
class FeatureWriter(Protocol):
    """Pushes rows (each with entity keys and event_timestamp) to an online feature view."""

    def push(self, view: str, rows: Sequence[Mapping[str, Any]]) -> None: ...


@runtime_checkable
class EventArchive(Protocol):
    """Append-only, replayable log of raw events (new files per batch, never rewritten)."""

    def append(self, topic: str, records: Sequence[Mapping[str, Any]]) -> None: ...


@runtime_checkable
class BanditStateStore(Protocol):
    """Beta posteriors per (segment, item): returns (alpha, beta) arrays aligned with item_ids."""

    def posteriors(self, segment: str, item_ids: Sequence[str]) -> tuple[FloatArray, FloatArray]: ...


@runtime_checkable
class VectorIndex(Protocol):
    """Inner-product ANN over item vectors, with external string ids."""

    version: str

    def search(self, queries: FloatArray, k: int) -> tuple[list[list[str]], FloatArray]: ...

    def add(self, item_ids: Sequence[str], vectors: FloatArray) -> None: ...

    def __len__(self) -> int: ...


@runtime_checkable
class Ranker(Protocol):
    """Scores candidates per objective head. Returns {head: scores aligned with items}."""

    version: str

    def score(self, user: Features, items: Sequence[Features]) -> dict[str, FloatArray]: ...


@runtime_checkable
class ArtifactStore(Protocol):
    """Versioned artifacts (weights, indexes) with a manifest and checksum per version."""

    def publish(self, kind: str, files: Mapping[str, Path], meta: Mapping[str, Any]) -> str: ...

    def latest_version(self, kind: str) -> str | None: ...

    def fetch(self, kind: str, version: str, dest: Path) -> Path: ...


@runtime_checkable
class FeedSink(Protocol):
    """Where finished feeds go: the feeds topic, a cache, the impression log."""

    def publish(self, feed: Feed) -> None: ...


@runtime_checkable
class FeatureRanker(Protocol):
    """A ranker over the funnel's named feature matrix: ``dense[n, len(feature_names)]`` (NaN =
    unknown) -> ``{head: scores [n]}``. The funnel builds the columns the ranker names."""

    version: str

    @property
    def feature_names(self) -> tuple[str, ...]: ...

    def score_arrays(self, dense: FloatArray) -> dict[str, FloatArray]: ...


@runtime_checkable
class ItemVectorLookup(Protocol):
    """Stored vectors of known items: ``(vectors [n, d], found [n] bool)`` aligned with ``item_ids``."""

    def vectors(self, item_ids: Sequence[str]) -> tuple[FloatArray, npt.NDArray[np.bool_]]: ...


@runtime_checkable
class ItemRelations(Protocol):
    """Learned item-to-item relations (``models.item_neighbours``): for a user's engaged items (newest
    first), the top-k related items with scores, per relation name (``cf``, ``seq``). ``memo``: a
    dict the caller keeps for one request, where the relations keep what ``score`` and ``scores``
    of the same user share (the user's row, computed once)."""

    version: str

    def score(self, relation: str, recent: Sequence[str], k: int,
              memo: dict[Any, Any] | None = None) -> list[tuple[str, float]]: ...


@runtime_checkable
class ItemRelationScores(Protocol):
    """Relations that also score given items (``models.item_neighbours``): each item's score in the
    user's row over the row's best score (0 for an item the row does not reach), so the ranker sees
    a relation's opinion of every candidate, not only of the ones it retrieved."""

    def scores(self, relation: str, recent: Sequence[str], item_ids: Sequence[str],
               memo: dict[Any, Any] | None = None) -> FloatArray: ...
