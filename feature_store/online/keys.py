"""Redis key names for streamrec's online state. One place, so writers and readers agree.

Every key carries a Redis Cluster hash tag (``{...}``), so the keys one script touches can be put in
one hash slot and declared:

* per-user and per-item keys are tagged with their entity's virtual shard, ``{n}`` with
  ``n = crc32(id) % SHARDS``. A batch's writes are grouped by shard: one script per shard in a
  cluster (atomic per shard), one script for everything on a single Redis;
* the shared popularity and bandit tables are split into ``SLICES`` slices by item (the slice of
  an item is ``shard(item) % SLICES``, tagged like that shard), so no single slot takes every
  engagement; readers merge the slices;
* the catalogue pools (``fresh``, ``items:active``) share the ``{catalog}`` tag, and the consumer
  bookkeeping (partition watermarks and stats) the ``{ctl}`` tag.

``SHARDS`` bounds how many masters a cluster can spread the entity keys over (a few shards per
master keep them balanced) and is part of the key layout: changing it moves every key.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from functools import lru_cache

SHARDS = 256
SLICES = 16
CONTROL_TAG = "{ctl}"
CATALOG_TAG = "{catalog}"


@lru_cache(maxsize=1 << 18)
def shard(entity_id: str) -> int:
    """The virtual shard of a user or item id."""
    return zlib.crc32(entity_id.encode()) % SHARDS


@lru_cache(maxsize=1 << 18)
def pop_slice(item_id: str) -> int:
    """The slice of the shared popularity/bandit tables that holds ``item_id`` (memoised: a feed
    request groups its 500 candidates by slice)."""
    return shard(item_id) % SLICES


@lru_cache(maxsize=1 << 18)
def tag(entity_id: str) -> str:
    return f"{{{shard(entity_id)}}}"


def tag_of(key: str) -> str:
    """The hash tag of a key built here (``{...}`` with its braces)."""
    start = key.index("{")
    return key[start:key.index("}", start) + 1]


@dataclass(frozen=True)
class Keys:
    """All key names under one prefix (``settings.redis.key_prefix``, without braces)."""

    prefix: str = "sr:"
    _names: dict[tuple[str, str], str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if "{" in self.prefix or "}" in self.prefix:
            raise ValueError(f"redis.key_prefix {self.prefix!r} may not contain braces (hash tags)")

    def _entity(self, kind: str, entity_id: str) -> str:
        """Built once per (kind, id) and kept (planning asks for the same names many times)."""
        name = self._names.get((kind, entity_id))
        if name is None:
            if len(self._names) >= 1 << 20:
                self._names.clear()
            name = self._names[(kind, entity_id)] = f"{self.prefix}{tag(entity_id)}:{kind}:{entity_id}"
        return name

    # ---- bookkeeping ---------------------------------------------------------------------------
    def dedupe(self, user_id: str, event_id: str) -> str:
        """The event's dedupe marker, in its user's shard (a duplicate carries the same user)."""
        return f"{self.prefix}{tag(user_id)}:dd:{event_id}"

    @property
    def watermarks(self) -> str:
        """Hash: ``<topic@id>:<partition>`` -> the highest offset whose batch is fully applied. The
        worker passes ``topic@<topic id>``, so a topic created again starts new watermarks."""
        return f"{self.prefix}{CONTROL_TAG}:off"

    @property
    def stats(self) -> str:
        return f"{self.prefix}{CONTROL_TAG}:stats"

    @property
    def forgotten(self) -> str:
        """Stream of the eraser's deletions (``kind`` item|user, ``id``: an item id, or a user's
        pseudonym, never a user id): every serving process reads it and drops them from its caches."""
        return f"{self.prefix}{CONTROL_TAG}:forgotten"

    def applied(self, group: str) -> str:
        """Hash of one shard (``group`` = its tag): ``<stage>:<topic@id>:<partition>`` -> the highest
        offset whose writes to this shard are applied (Redis Cluster only; see ``writer``)."""
        return f"{self.prefix}{group}:aw"

    # ---- shared tables, sliced by item -----------------------------------------------------------
    def slice_tag(self, n: int) -> str:
        return f"{{{n}}}"

    def popularity(self, kind: str, epoch: int, segment: str, part: int) -> str:
        return f"{self.prefix}{{{part}}}:pop:{kind}:{epoch}:{segment}"

    def segments(self, kind: str, part: int) -> str:
        return f"{self.prefix}{{{part}}}:popseg:{kind}"

    def bandit(self, segment: str, part: int) -> str:
        return f"{self.prefix}{{{part}}}:bb:{segment}"

    # ---- per item ----------------------------------------------------------------------------------
    def covisit(self, item_id: str) -> str:
        return self._entity("cv", item_id)

    def linear(self, item_id: str) -> str:
        return self._entity("lin", item_id)

    def item(self, item_id: str) -> str:
        return self._entity("item", item_id)

    def vector(self, item_id: str) -> str:
        return self._entity("vec", item_id)

    def item_features(self, item_id: str) -> str:
        """FEATURES' item state as a hash that the writer merges in place (``item_merge``)."""
        return self._entity("fs:item", item_id)

    @property
    def fresh(self) -> str:
        return f"{self.prefix}{CATALOG_TAG}:fresh"

    @property
    def active_items(self) -> str:
        return f"{self.prefix}{CATALOG_TAG}:items:active"

    @property
    def catalog_version(self) -> str:
        """Hash: ``items`` counts the item batches applied (readers cache categories until it moves)."""
        return f"{self.prefix}{CATALOG_TAG}:version"

    # ---- per user ----------------------------------------------------------------------------------
    def history(self, user_id: str) -> str:
        return self._entity("hist", user_id)

    def seen(self, user_id: str) -> str:
        return self._entity("seen", user_id)

    def impressions(self, user_id: str) -> str:
        return self._entity("imp", user_id)

    def user_features(self, user_id: str) -> str:
        """FEATURES' user state (``feature_store.transforms.encode_user``)."""
        return self._entity("fs:user", user_id)

    def user(self, user_id: str) -> str:
        return self._entity("user", user_id)
