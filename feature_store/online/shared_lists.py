"""The serving store's cache of lists that are the same for every user (popular, trending, fresh), per
read size, for ``retrieval.shared_cache_ttl_s`` of the request clock.

Requests ask for a few sizes of one list (``funnel.retrieval.shared_top`` reads powers of two), and
each size used to be reloaded on its own: a read of its top-k rows from every slice and epoch, then
their merge. Here a list's sizes (a *group*: kind and segment) are reloaded together by one read at
the largest size; each smaller size is merged from the prefixes of that read's rows (``ZREVRANGE 0
k-1`` is the prefix of ``ZREVRANGE 0 K-1``), so every size holds what a read of its own would have
given at that moment. Past ``REFRESH_AT`` of the TTL a hit starts that reload in the background (one
at a time per group), so under steady traffic a request rarely waits for one. At three quarters (it was
half) a busy group is reloaded ~1.3 times a second instead of twice; a list served is still never older
than the TTL, and a reload (~10-20 ms of one thread) has a quarter of the TTL to land.

Example:
    >>> lists = SharedLists(ttl_s=1.0)
    >>> lists.get(("pop", None), 2, 0.0, lambda sizes: [[("a", 2.0), ("b", 1.0)][:k] for k in sizes])
    [('a', 2.0), ('b', 1.0)]
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from core.online import Scored

log = logging.getLogger(__name__)
Group = tuple[Any, ...]
Load = Callable[[Sequence[int]], list[Scored]]  # sizes -> each size's list, from one read
REFRESH_AT = 0.75  # of the TTL: a hit past it reloads the group in the background


class SharedLists:
    """``get(group, k, now, load)``: the group's top-k list as of at most ``ttl_s`` of request time ago."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._lists: dict[tuple[Group, int], tuple[float, Scored]] = {}
        self._reloading: set[Group] = set()
        self._cleared = 0  # clear() calls: a reload begun before one does not store its lists
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def get(self, group: Group, k: int, now: float, load: Load) -> Scored:
        hit = self._lists.get((group, k))
        age = now - hit[0] if hit is not None else -1.0
        if hit is not None and 0.0 <= age < self.ttl_s:
            if age >= self.ttl_s * REFRESH_AT and group not in self._reloading:
                self._reloading.add(group)
                sizes = sorted({size for g, size in list(self._lists) if g == group})
                self._reloader().submit(self._reload, group, sizes, now, load)
            return hit[1]
        value = load([k])[0]
        self._lists[(group, k)] = (now, value)
        return value

    def clear(self) -> None:
        """Every list is read again (the eraser removed items from them)."""
        with self._lock:
            self._cleared += 1
            self._lists.clear()

    def _reload(self, group: Group, sizes: list[int], now: float, load: Load) -> None:
        cleared = self._cleared
        try:
            values = load(sizes)
            with self._lock:
                for size, value in zip(sizes, values, strict=True):
                    current = self._lists.get((group, size))
                    if cleared == self._cleared and (current is None or current[0] <= now):
                        self._lists[(group, size)] = (now, value)
        except Exception as exc:  # noqa: BLE001 - the next request past the TTL reads it itself
            log.warning("background reload of %s failed: %s", group, exc)
        finally:
            self._reloading.discard(group)

    def _reloader(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="shared-lists")
            return self._pool
