"""Redis key names for streamrec's online state. One place, so writers and readers agree."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """All key names under one prefix (``settings.redis.key_prefix``)."""

    prefix: str = "sr:"

    def dedupe(self, event_id: str) -> str:
        return f"{self.prefix}dd:{event_id}"

    def watermark(self, topic: str, partition: int) -> str:
        """The highest applied offset of a partition. The worker passes ``topic@<topic id>`` as
        ``topic``, so a topic created again (or a broker that restarted empty) starts a new one."""
        return f"{self.prefix}off:{topic}:{partition}"

    @property
    def stats(self) -> str:
        return f"{self.prefix}stats"

    def popularity(self, kind: str, epoch: int, segment: str) -> str:
        return f"{self.prefix}pop:{kind}:{epoch}:{segment}"

    def segments(self, kind: str) -> str:
        return f"{self.prefix}popseg:{kind}"

    def counters(self, item_id: str) -> str:
        return f"{self.prefix}ic:{item_id}"

    def covisit(self, item_id: str) -> str:
        return f"{self.prefix}cv:{item_id}"

    def history(self, user_id: str) -> str:
        return f"{self.prefix}hist:{user_id}"

    def seen(self, user_id: str) -> str:
        return f"{self.prefix}seen:{user_id}"

    def affinity(self, user_id: str, epoch: int) -> str:
        return f"{self.prefix}aff:{user_id}:{epoch}"

    def impressions(self, user_id: str) -> str:
        return f"{self.prefix}imp:{user_id}"

    def bandit(self, segment: str) -> str:
        return f"{self.prefix}bb:{segment}"

    def linear(self, item_id: str) -> str:
        return f"{self.prefix}lin:{item_id}"

    def item(self, item_id: str) -> str:
        return f"{self.prefix}item:{item_id}"

    def vector(self, item_id: str) -> str:
        return f"{self.prefix}vec:{item_id}"

    @property
    def fresh(self) -> str:
        return f"{self.prefix}fresh"

    @property
    def active_items(self) -> str:
        return f"{self.prefix}items:active"

    def user_features(self, user_id: str) -> str:
        """FEATURES' transform state (feature_store.transforms.UserState dumps)."""
        return f"{self.prefix}fs:user:{user_id}"

    def item_features(self, item_id: str) -> str:
        return f"{self.prefix}fs:item:{item_id}"

    def user(self, user_id: str) -> str:
        return f"{self.prefix}user:{user_id}"
