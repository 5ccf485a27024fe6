"""A brand-new item reaches some users' feeds right after its upsert, with no retrain."""

from __future__ import annotations

import time

from serving_helpers import seed_state, small_world

from core.events import Interaction, ItemUpsert
from core.settings import Settings
from services.pipeline.build import build_pipeline


def test_new_item_is_served_soon_after_upsert(settings: Settings):
    items, events = small_world(n_items=80)
    now = time.time()
    events += [Interaction(event_id=f"imp-{it.item_id}-{k}", user_id=f"viewer{k}", item_id=it.item_id,
                           type="impression", timestamp=now - 10) for it in items for k in range(50)]
    seed_state(settings, items, events)
    pipeline, close = build_pipeline(settings, hot_swap=False)
    try:
        users = [f"u{k}" for k in range(8)] + [f"cold{k}" for k in range(22)]
        before = {it.item_id for u in users for it in pipeline.feed(u, n=10).feed.items}
        upserted_at = time.time()
        seed_state(settings, [ItemUpsert(item_id="brand-new", categories=["c1"], created_at=upserted_at)], [])
        time.sleep(settings.retrieval.shared_cache_ttl_s + 0.1)  # the fresh pool is cached that long
        feeds = [pipeline.feed(u, n=10).feed for u in users]
        elapsed = time.time() - upserted_at
    finally:
        close()
    hits = [f for f in feeds if any(it.item_id == "brand-new" for it in f.items)]
    assert "brand-new" not in before
    assert len(hits) >= 3 and elapsed < 60
    slot = next(it for it in hits[0].items if it.item_id == "brand-new")
    assert slot.explore and 0 < slot.propensity <= 1 and slot.source == "explore"
