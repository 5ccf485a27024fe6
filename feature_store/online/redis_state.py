"""``core.online.OnlineState`` over the stream worker's Redis state (key layout: ``keys.Keys``).

Every call is bounded by ``redis.socket_timeout_s``; a failure raises ``StoreUnavailable`` and opens a
short circuit breaker so the next requests fail fast. Lists that are the same for every user
(popular, trending, fresh) are cached for ``retrieval.shared_cache_ttl_s`` of the request clock
(``shared_lists``: a list's sizes reloaded together, from one read).
The answers come from ``views`` (shared with the in-process store).
"""

from __future__ import annotations

import functools
import itertools
import logging
import operator
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from typing import Any, ParamSpec, TypeVar

import numpy as np
import numpy.typing as npt
import redis
from redis.cluster import ClusterNode, RedisCluster

from core import features as names
from core.errors import StoreUnavailable
from core.online import F32, ItemInfo, Scored, UserState
from core.protocols import FeatureReader, Features
from core.settings import Settings
from feature_store.online import pipelined, views
from feature_store.online.effects import POP, TREND
from feature_store.online.item_columns import CountColumns, ItemColumns, Rows, epoch_scores, positions
from feature_store.online.keys import SLICES, Keys, pop_slice
from feature_store.online.shared_lists import SharedLists
from feature_store.redis_pipe import RedisPipe
from feature_store.redis_url import parse

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")
BREAKER_S = 1.0
_AT, _INFO = operator.itemgetter(0), operator.itemgetter(1)  # of an item cache entry (read at, info)
BREAKER_TIMEOUTS = 3  # consecutive missed deadlines of serving reads that open the breaker


def redis_client(settings: Settings, socket_timeout_s: float | None = None) -> redis.Redis:
    """Sync client with bounded timeouts: a dead Redis costs at most ``socket_timeout_s`` per call
    (``redis.socket_timeout_s`` unless given: a blocking read needs longer). A ``redis+cluster://``
    URL gives a ``RedisCluster`` (same commands; pipelines span nodes)."""
    r = settings.redis
    ep = parse(r.url or "redis://127.0.0.1:6379/0")
    opts: dict[str, Any] = {"socket_timeout": socket_timeout_s or r.socket_timeout_s,
                            "socket_connect_timeout": r.connect_timeout_s, "decode_responses": False}
    if ep.cluster:
        nodes = [ClusterNode(host, port) for host, port in ep.nodes]
        return RedisCluster(startup_nodes=nodes, username=ep.username, password=ep.password,  # type: ignore[return-value]
                            ssl=ep.tls, **ep.tls_kwargs(), **opts)
    return redis.Redis.from_url(ep.single_url, health_check_interval=0, **opts)


def _guard(fn: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        self: RedisOnlineState = args[0]  # type: ignore[assignment]
        if time.monotonic() < self._down_until:
            raise StoreUnavailable("redis marked down (circuit breaker open)")
        try:
            return fn(*args, **kwargs)
        except (redis.RedisError, OSError) as exc:
            self._down_until = time.monotonic() + BREAKER_S
            raise StoreUnavailable(f"redis: {exc}") from exc
    return wrapper


def _pairs(rows: Sequence[tuple[Any, Any]]) -> views.Rows:
    if not rows:
        return []
    members, scores = zip(*rows, strict=True)
    return list(zip(views.texts(members), map(float, scores), strict=True))


class RedisOnlineState:
    """Implements ``core.online.OnlineState`` over a sync ``redis.Redis`` (decode_responses=False)."""

    def __init__(self, client: redis.Redis, settings: Settings, cache_size: int = 20_000,
                 pipe: RedisPipe | None = None, columns_size: int = 250_000) -> None:
        self.r, self.settings = client, settings
        self.pipe = pipe if pipe is not None else serving_pipe(settings)
        self.keys = Keys(settings.redis.key_prefix)
        self.pop_hl = settings.worker.popularity_half_life_s
        self.trend_hl = settings.worker.trending_half_life_s
        self._down_until = 0.0
        self._timeouts = 0
        self._cache: OrderedDict[str, tuple[float, ItemInfo | None]] = OrderedDict()
        self._cache_size = cache_size
        self._forgets = 0  # deletions heard (forget_items): a read begun before one is not cached
        self._lock = threading.Lock()
        self._lists = SharedLists(settings.retrieval.shared_cache_ttl_s)
        self._counts: dict[str, CountColumns] = {}  # per segment
        self._columns = ItemColumns(columns_size)

    def segment_key(self, segment: str | None) -> str:
        return views.segment_key(segment, self.settings.bandit.segment_key)

    @_guard
    def ping(self) -> bool:
        return bool(self.r.ping())

    @_guard
    def user(self, user_id: str) -> UserState:
        """History, seen set and user record (one slot: one round trip), then the co-visitation
        neighbours of the recent items (their own shards: a second round trip)."""
        k = self.settings.retrieval.covisit
        with self.r.pipeline(transaction=False) as p:
            p.lrange(self.keys.history(user_id), 0, -1)
            p.smembers(self.keys.seen(user_id))
            p.hgetall(self.keys.user(user_id))
            hist, seen, rec = p.execute()
        history = [views.text(h) for h in hist]
        recent = views.history_items(history, views.COVISIT_RECENT)
        neighbours = []
        if recent:
            per = min(k, views.COVISIT_PER_ITEM)
            with self.r.pipeline(transaction=False) as p:
                for item in recent:
                    p.zrevrange(self.keys.covisit(item), 0, per - 1, withscores=True)
                neighbours = [_pairs(rows) for rows in p.execute()]
        record = {views.text(a): views.text(b) for a, b in rec.items()}
        return views.user_state(user_id, history, neighbours, {views.text(x) for x in seen}, record, k)

    # ---- the request's two round trips (funnel.reads.BatchedReads) -----------------------------
    def read_user(self, user_id: str, reader: FeatureReader | None) -> tuple[UserState, Features, bool]:
        """The user (as :meth:`user`) and Feast's user row, in one round trip."""
        rows = _pipelined_rows(reader)
        if self.pipe is None:
            return self.user(user_id), *_row(reader, user_id)
        packed = pipelined.user_commands(self.keys, user_id, self.settings.retrieval.covisit)
        if rows is not None:
            packed += rows.packed(names.USER_KEY, [user_id])
        replies = self._trip(packed, 4 if rows is not None else 3)
        hist, neighbours, seen, record = pipelined.user_parts(replies[:3])
        user = views.user_state(user_id, hist, neighbours, seen, record, self.settings.retrieval.covisit)
        if rows is not None:
            return user, rows.decoded(names.USER_KEY, [user_id], replies[3:])[0], True
        return user, *_row(reader, user_id)

    def read_items(self, item_ids: Sequence[str], segment: str | None, now: float,
                   reader: FeatureReader | None, also_counts: Sequence[str] = ()
                   ) -> tuple[list[Features], F32, F32, F32, bool]:
        """Feast's item rows, popularity and posteriors (as :meth:`item_popularity` and
        :meth:`posteriors`) in one round trip; ``also_counts`` items' bandit counts too. Rows and
        popularity come from the process's item columns where they are younger than
        ``retrieval.item_state_max_age_s`` (``item_columns``); only the others are read."""
        if self.pipe is None or not item_ids:
            return self._read_items_apart(item_ids, segment, now, reader)
        rows = _pipelined_rows(reader)
        epochs, seg = views.epochs(now, self.pop_hl), self.segment_key(segment)
        max_age = self.settings.retrieval.item_state_max_age_s
        cols = self._item_columns(item_ids) if rows is not None and max_age > 0 else None
        at, forgets = time.monotonic(), self._forgets
        if cols is None:
            stale = list(dict.fromkeys(item_ids))
        else:
            pos = cols[0].stale_positions(cols[1], epochs[0], at - max_age)
            stale = [item_ids[j] for j in pos.tolist()]
        parts = _by_slice(stale)
        count_cols, count_rows, count_stale = self._counts_of(seg, [*item_ids, *also_counts])
        count_parts = _by_slice(count_stale)
        packed = b"".join(pipelined.pack_members("ZMSCORE", self.keys.popularity(POP, e, "all", part), ids)
                          for e in epochs for part, ids in parts.items())
        packed += b"".join(pipelined.pack_members("HMGET", self.keys.bandit(seg, part), _count_fields(ids))
                           for part, ids in count_parts.items())
        if rows is not None:
            packed += rows.packed(names.ITEM_KEY, stale)
        n_pop, n_counts = len(epochs) * len(parts), len(count_parts)
        n_replies = n_pop + n_counts + (len(stale) if rows is not None else 0)
        replies = self._trip(packed, n_replies) if n_replies else []
        scores = epoch_scores(stale, epochs, parts, replies[:n_pop])
        self._store_counts(count_cols, count_parts, replies[n_pop:n_pop + n_counts])
        alpha, beta = self._posterior_arrays(count_cols, count_rows[:len(item_ids)])
        feast = rows.decoded(names.ITEM_KEY, stale, replies[n_pop + n_counts:], copy=False) \
            if rows is not None else None
        if cols is not None:
            columns, where = cols
            keep = at if forgets == self._forgets else -np.inf  # a deletion heard meanwhile: not kept
            columns.store(where[pos], scores, feast or [], epochs[0], keep)
            return columns.feast_rows(where), columns.popularity(where, epochs, now, self.pop_hl), \
                alpha, beta, True
        take = positions(stale, item_ids)
        aligned = scores if take is None else [s[take] for s in scores]
        popularity = views.decayed_arrays(list(zip(epochs, aligned, strict=True)), now, self.pop_hl,
                                          len(item_ids))
        if feast is None:
            feast, ok = _item_rows(reader, item_ids)
            return feast, popularity, alpha, beta, ok
        return feast if take is None else [feast[j] for j in take.tolist()], popularity, alpha, beta, True

    def _item_columns(self, item_ids: Sequence[str]) -> tuple[ItemColumns, npt.NDArray[np.int64]]:
        """The process's item columns and the rows of ``item_ids`` (new columns when these are full)."""
        columns = self._columns
        where = columns.locate(item_ids)
        while where is None:
            columns = self._columns = ItemColumns(columns.capacity)
            where = columns.locate(item_ids)
        return columns, where

    def _read_items_apart(self, item_ids: Sequence[str], segment: str | None, now: float,
                          reader: FeatureReader | None) -> tuple[list[Features], F32, F32, F32, bool]:
        feast, ok = _item_rows(reader, item_ids)
        alpha, beta = self.posteriors(segment, item_ids)
        return feast, self.item_popularity(item_ids, now), alpha, beta, ok

    def _trip(self, packed: bytes, n_replies: int) -> list[Any]:
        """One round trip on the serving pipe, within ``redis.read_timeout_s``; a failure opens the
        circuit breaker like any other read."""
        assert self.pipe is not None
        if time.monotonic() < self._down_until:
            raise StoreUnavailable("redis marked down (circuit breaker open)")
        try:
            replies = self.pipe.execute(packed, n_replies, self.settings.redis.read_timeout_s)
        except StoreUnavailable as exc:
            slow = isinstance(exc.__cause__, TimeoutError)
            self._timeouts = self._timeouts + 1 if slow else BREAKER_TIMEOUTS
            if self._timeouts >= BREAKER_TIMEOUTS:  # down, or slow again and again: stop asking for a while
                self._down_until = time.monotonic() + BREAKER_S
            raise
        self._timeouts = 0
        return replies

    def _segmented(self, kind: str, half_life: float, segment: str | None, sizes: Sequence[int],
                   now: float) -> list[Scored]:
        """Each size's merge of every epoch's top-k of every slice (an item lives in one slice): the
        segment's own list, else (when it is empty) everyone's, read only then. One read, at the
        largest size; a smaller size merges the prefixes of its rows (``shared_lists``), every size
        from one pass over the rows (``views.decayed_tops_flat``)."""
        seg, epochs, most = self.segment_key(segment), views.epochs(now, half_life), max(sizes)
        for s in [seg] if seg == "all" else [seg, "all"]:
            keys = [self.keys.popularity(kind, e, s, part) for e in epochs for part in range(SLICES)]
            flats = self._top_flats(keys, most) if most > 0 else []
            if any(flats):
                by_epoch = [(e, flats[j * SLICES:(j + 1) * SLICES]) for j, e in enumerate(epochs)]
                return views.decayed_tops_flat(by_epoch, now, half_life, sizes)
        return [[] for _ in sizes]

    def _top_flats(self, keys: Sequence[str], k: int) -> list[list[Any]]:
        """``ZREVRANGE key 0 k-1 WITHSCORES`` of each key, flat ``[member, score, ...]``; on the
        serving pipe when there is one (hiredis parses the replies in C)."""
        if self.pipe is None:
            with self.r.pipeline(transaction=False) as p:
                for key in keys:
                    p.zrevrange(key, 0, k - 1, withscores=True)
                return [list(itertools.chain.from_iterable(rows)) for rows in p.execute()]
        packed = b"".join(pipelined.pack("ZREVRANGE", key, 0, k - 1, "WITHSCORES") for key in keys)
        return list(self.pipe.execute(packed, len(keys), self.settings.redis.socket_timeout_s))

    @_guard
    def popular(self, segment: str | None, k: int, now: float) -> Scored:
        return self._lists.get(("pop", segment), k, now,
                               lambda sizes: self._segmented(POP, self.pop_hl, segment, sizes, now))

    @_guard
    def trending(self, segment: str | None, k: int, now: float) -> Scored:
        return self._lists.get(("trend", segment), k, now,
                               lambda sizes: self._segmented(TREND, self.trend_hl, segment, sizes, now))

    @_guard
    def covisit(self, item_ids: Sequence[str], k: int) -> Scored:
        if not item_ids or k <= 0:
            return []
        with self.r.pipeline(transaction=False) as p:
            for iid in item_ids:
                p.zrevrange(self.keys.covisit(iid), 0, k - 1, withscores=True)
            res = p.execute()
        return views.sum_neighbours([_pairs(rows) for rows in res], k)

    @_guard
    def fresh(self, k: int) -> Scored:
        if k <= 0:
            return []
        return self._lists.get(("fresh",), k, time.time(), lambda sizes: [rows[:size] for rows in [_pairs(
            self.r.zrevrange(self.keys.fresh, 0, max(sizes) - 1, withscores=True))] for size in sizes])

    @_guard
    def items(self, item_ids: Sequence[str]) -> list[ItemInfo | None]:
        now = time.monotonic()
        ttl = self.settings.retrieval.item_cache_ttl_s
        with self._lock:
            found = list(map(self._cache.get, item_ids))
        try:  # the usual case, every one cached and fresh: C-level passes only
            if now - min(map(_AT, found), default=now) <= ttl:  # type: ignore[arg-type]
                return list(map(_INFO, found))  # type: ignore[arg-type]
        except TypeError:  # one not cached (None)
            pass
        cached = dict(zip(item_ids, found, strict=True))
        missing = [i for i, c in cached.items() if c is None or now - c[0] > ttl]
        forgets = self._forgets
        fetched = self._fetch_items(missing) if missing else {}
        if not fetched:
            return [c[1] for c in map(cached.__getitem__, item_ids)]  # type: ignore[index]
        with self._lock:
            # an item deleted meanwhile: this read may predate its stub; used once, never cached
            keep = fetched if forgets == self._forgets else {}
            for iid, info in keep.items():
                self._cache[iid] = (now, info)
                self._cache.move_to_end(iid)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return [fetched[i] if i in fetched else cached[i][1] for i in item_ids]  # type: ignore[index]

    def forget_items(self, item_ids: Collection[str]) -> None:
        """The eraser deleted these items: their catalogue rows are read again (its inactive stubs,
        which retrieval drops), and so are the shared lists (it removed the items from them)."""
        with self._lock:
            self._forgets += 1
            for iid in item_ids:
                self._cache.pop(iid, None)
        self._columns.forget(item_ids)
        self._lists.clear()

    def _fetch_items(self, ids: list[str]) -> dict[str, ItemInfo | None]:
        if self.pipe is not None:  # pre-packed, parsed by hiredis: a cache miss costs no redis-py work
            replies = self.pipe.execute(pipelined.info_commands(self.keys, ids), 2 * len(ids),
                                        self.settings.redis.socket_timeout_s)
            return pipelined.infos(ids, replies)
        with self.r.pipeline(transaction=False) as p:
            for iid in ids:
                p.hmget(self.keys.item(iid), "categories", "attributes", "created_at", "active")
                p.get(self.keys.vector(iid))
            res = p.execute()
        out = {}
        for j, iid in enumerate(ids):
            cats, attrs, created, active = (None if f is None else views.text(f) for f in res[2 * j])
            out[iid] = views.item_info(iid, cats, attrs, created, active, res[2 * j + 1])
        return out

    @_guard
    def item_popularity(self, item_ids: Sequence[str], now: float) -> F32:
        if not item_ids:
            return np.zeros(0, np.float32)
        epochs = views.epochs(now, self.pop_hl)
        parts = _by_slice(item_ids)
        with self.r.pipeline(transaction=False) as p:
            for e in epochs:
                for part, ids in parts.items():
                    p.zmscore(self.keys.popularity(POP, e, "all", part), ids)
            res = iter(p.execute())
        rows = []
        for e in epochs:
            score = {i: v for ids in parts.values() for i, v in zip(ids, next(res), strict=True)}
            rows.append((e, [score[i] for i in item_ids]))
        return views.decayed_scores(rows, now, self.pop_hl, len(item_ids))

    @_guard
    def posteriors(self, segment: str | None, item_ids: Sequence[str]) -> tuple[F32, F32]:
        """Counts cached for shared_cache_ttl_s (wall clock: they only grow)."""
        seg = self.segment_key(segment)
        cols, rows, stale = self._counts_of(seg, item_ids)
        if stale:
            parts = _by_slice(stale)
            with self.r.pipeline(transaction=False) as p:
                for part, ids in parts.items():
                    p.hmget(self.keys.bandit(seg, part), _count_fields(ids))
                self._store_counts(cols, parts, p.execute())
        return self._posterior_arrays(cols, rows)

    def _counts_of(self, seg: str, item_ids: Sequence[str]) -> tuple[CountColumns, Rows, list[str]]:
        """The segment's count columns (new ones when full), the rows of ``item_ids`` and the distinct
        ids among them read longer than shared_cache_ttl_s ago (or never), in first-seen order."""
        cols = self._counts.get(seg)
        rows = cols.locate(item_ids) if cols is not None else None
        while cols is None or rows is None:
            cols = self._counts[seg] = CountColumns(self._columns.capacity)
            rows = cols.locate(item_ids)
        pos = cols.stale_positions(rows, time.monotonic() - self.settings.retrieval.shared_cache_ttl_s)
        return cols, rows, [item_ids[j] for j in pos.tolist()]

    def _store_counts(self, cols: CountColumns, parts: dict[int, list[str]], replies: Sequence[Any]) -> None:
        now = time.monotonic()
        for ids, raw in zip(parts.values(), replies, strict=True):
            rows = cols.locate(ids)  # (every one located by _counts_of: no new row)
            if rows is not None:
                counts = np.array([0.0 if v is None else float(v) for v in raw], np.float64)
                cols.store(rows, counts.reshape(-1, 2), now)

    def _posterior_arrays(self, cols: CountColumns, rows: Rows) -> tuple[F32, F32]:
        b = self.settings.bandit
        return views.posterior_arrays(cols.counts[rows], b.prior_alpha, b.prior_beta)


def _by_slice(item_ids: Sequence[str]) -> dict[int, list[str]]:
    """The distinct ids grouped by slice (ascending; first-seen order within one), with no Python
    call per id (``pop_slice`` is memoised in C)."""
    ordered = sorted(dict.fromkeys(item_ids), key=pop_slice)
    return {part: list(group) for part, group in itertools.groupby(ordered, key=pop_slice)}


def _count_fields(item_ids: Sequence[str]) -> list[str]:
    return [f for i in item_ids for f in (f"{i}:i", f"{i}:c")]


def serving_pipe(settings: Settings) -> RedisPipe | None:
    """The serving round trips' transport, on one Redis; None on a Redis Cluster (read call by call)."""
    url = settings.redis.url or "redis://127.0.0.1:6379/0"
    ep = parse(url)
    if ep.cluster:
        return None
    r = settings.redis
    return RedisPipe(ep.single_url, r.connect_timeout_s, r.socket_timeout_s)


def _pipelined_rows(reader: FeatureReader | None) -> pipelined.Rows | None:
    """Feast's reader as pipelined commands, when it has them and is built (``LazyReader``)."""
    target = getattr(reader, "pipelined", None)
    rows = target() if callable(target) else reader
    return rows if rows is not None and hasattr(rows, "packed") and hasattr(rows, "decoded") else None  # type: ignore[return-value]


def _row(reader: FeatureReader | None, user_id: str) -> tuple[Features, bool]:
    if reader is None:
        return {}, True
    try:
        return dict(reader.user_features(user_id)), True
    except StoreUnavailable:
        return {}, False


def _item_rows(reader: FeatureReader | None, item_ids: Sequence[str]) -> tuple[list[Features], bool]:
    if reader is None or not item_ids:
        return [{} for _ in item_ids], True
    try:
        return list(reader.item_features(item_ids)), True
    except StoreUnavailable:
        return [{} for _ in item_ids], False
