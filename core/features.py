"""Feature names: the contract between the stream worker, the Feast repo, the readers and the ranker.

Plain strings only (no Feast import). ``feature_store/repo`` defines the Feast objects with exactly
these names; ``feature_store.transforms`` produces rows whose keys are these field names.

Example:
    >>> USER_REALTIME.view, USER_REALTIME.push_source
    ('user_realtime', 'user_realtime_push')
"""

from __future__ import annotations

from dataclasses import dataclass

USER_ENTITY = "user"
ITEM_ENTITY = "item"
USER_KEY = "user_id"
ITEM_KEY = "item_id"
EVENT_TIMESTAMP = "event_timestamp"


@dataclass(frozen=True)
class ViewNames:
    """One feature view: its name, entity join key, fields and (for stream views) push source."""

    view: str
    join_key: str
    fields: tuple[str, ...]
    push_source: str | None = None

    def ref(self, field: str) -> str:
        """``view:field``, the reference Feast's get_online_features takes."""
        return f"{self.view}:{field}"

    @property
    def refs(self) -> list[str]:
        return [self.ref(f) for f in self.fields]


# Batch views, computed offline from the archive (feature_store.offline) and materialized.
USER_PROFILE = ViewNames(
    "user_profile", USER_KEY, ("segment", "lifetime_events", "lifetime_positives", "first_seen_ts")
)
ITEM_META = ViewNames(
    "item_meta", ITEM_KEY, ("categories", "created_at", "active", "text_len", "content_vector")
)
# Stream views, pushed by the worker (feature_store.writer) from feature_store.transforms projections.
USER_REALTIME = ViewNames(
    "user_realtime", USER_KEY, ("recent_items", "history_len", "last_event_ts"), "user_realtime_push"
)
USER_AFFINITY = ViewNames(
    "user_category_affinity", USER_KEY, ("affinity_categories", "affinity_scores"),
    "user_category_affinity_push",
)
ITEM_REALTIME = ViewNames(
    "item_realtime", ITEM_KEY,
    ("impressions_1h", "clicks_1h", "ctr_1h", "impressions_24h", "clicks_24h", "ctr_24h", "item_age_s"),
    "item_realtime_push",
)

ALL_VIEWS = (USER_PROFILE, ITEM_META, USER_REALTIME, USER_AFFINITY, ITEM_REALTIME)
STREAM_VIEWS = (USER_REALTIME, USER_AFFINITY, ITEM_REALTIME)
BATCH_VIEWS = (USER_PROFILE, ITEM_META)
USER_VIEWS = (USER_PROFILE, USER_REALTIME, USER_AFFINITY)
ITEM_VIEWS = (ITEM_META, ITEM_REALTIME)

# Feature services.
RANKING_SERVICE = "ranking"  # the stream views: what the funnel ranks on
RETRIEVAL_SERVICE = "retrieval"
ALL_SERVICE = "all"  # every view, batch ones too (``streamrec features show``)
# Item fields left out of ranking (large; the retrieval stage reads them).
RANKING_EXCLUDED = frozenset({"content_vector"})
RETRIEVAL_FIELDS: dict[str, tuple[str, ...]] = {
    USER_REALTIME.view: ("recent_items",),
    USER_AFFINITY.view: USER_AFFINITY.fields,
    ITEM_META.view: ("categories", "content_vector"),
}


def view(name: str) -> ViewNames:
    for v in ALL_VIEWS:
        if v.view == name:
            return v
    raise KeyError(f"unknown feature view {name!r}")
