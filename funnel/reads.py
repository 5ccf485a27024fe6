"""The two reads of a feed request: the user (before retrieval) and the candidates (after it).

Each bundles what one stage needs from the online state and Feast, so a store can answer it in one
round trip (``RedisOnlineState`` pipelines both over one socket). Retrieval depends on the user's
history, and the candidates' reads depend on retrieval, so two round trips is the least a request
can take. A store without batched reads (``MemoryOnline``) is read call by call by :func:`user_reads`
and :func:`item_reads`, which define what a batched read must return (a contract test holds the
Redis bundle equal to them).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from core.errors import StoreUnavailable
from core.online import F32, OnlineState, UserState
from core.protocols import FeatureReader, Features

log = logging.getLogger(__name__)


@dataclass
class UserReads:
    user: UserState
    row: Features  # Feast's user row ({} when it could not be read)
    row_ok: bool = True


@dataclass
class ItemReads:
    rows: list[Features]  # Feast's item rows, aligned with the ids ({} each when unreadable)
    popularity: F32  # decayed popularity (``OnlineState.item_popularity``)
    alpha: F32  # bandit posteriors for the request's segment (``OnlineState.posteriors``)
    beta: F32
    rows_ok: bool = True


UserTuple = tuple[UserState, Features, bool]  # a BatchedReads' answers, as plain tuples: the stores
ItemTuple = tuple[list[Features], F32, F32, F32, bool]  # sit below the funnel and cannot import it


@runtime_checkable
class BatchedReads(Protocol):
    """A store that answers each bundle at once: ``read_user`` -> (user, row, row_ok) and
    ``read_items`` -> (rows, popularity, alpha, beta, rows_ok), equal to :func:`user_reads` and
    :func:`item_reads`. ``also_counts``: more items whose bandit counts the request will ask
    ``posteriors`` for (the exploration pool), to be fetched in the same trip."""

    def read_user(self, user_id: str, reader: FeatureReader | None) -> UserTuple: ...

    def read_items(self, item_ids: Sequence[str], segment: str | None, now: float,
                   reader: FeatureReader | None, also_counts: Sequence[str] = ()) -> ItemTuple: ...


def user_reads(state: OnlineState, user_id: str, reader: FeatureReader | None) -> UserReads:
    user = state.user(user_id)
    if reader is None:
        return UserReads(user, {})
    try:
        return UserReads(user, dict(reader.user_features(user_id)))
    except StoreUnavailable as exc:
        log.warning("user features unavailable: %s", exc)
        return UserReads(user, {}, False)


def item_reads(state: OnlineState, item_ids: Sequence[str], segment: str | None, now: float,
               reader: FeatureReader | None) -> ItemReads:
    rows: list[Features] = [{} for _ in item_ids]
    ok = True
    if reader is not None and item_ids:
        try:
            rows = list(reader.item_features(item_ids))
        except StoreUnavailable as exc:
            log.warning("item features unavailable: %s", exc)
            ok = False
    alpha, beta = state.posteriors(segment, item_ids)
    return ItemReads(rows, state.item_popularity(item_ids, now), alpha, beta, ok)


def read_user(state: OnlineState, user_id: str, reader: FeatureReader | None) -> UserReads:
    if isinstance(state, BatchedReads):
        return UserReads(*state.read_user(user_id, reader))
    return user_reads(state, user_id, reader)


def read_items(state: OnlineState, item_ids: Sequence[str], segment: str | None, now: float,
               reader: FeatureReader | None, also_counts: Sequence[str] = ()) -> ItemReads:
    if isinstance(state, BatchedReads):
        return ItemReads(*state.read_items(item_ids, segment, now, reader, also_counts))
    return item_reads(state, item_ids, segment, now, reader)
