"""Issue 16: a serving process hears of a deletion from the eraser at once, over real Redis. The eraser
writes the item's inactive stub, removes it from every list and announces it on the tenant's
``Keys.forgotten`` stream; the process's watcher thread (started by ``build_pipeline``) has the state
read the item again, so the 30 s item cache no longer says it is active; a process started after
the announcement hears of it too; another tenant's process hears nothing."""

from __future__ import annotations

import time

import pytest
import redis
from kafka import KafkaProducer
from serving_helpers import seed_state, small_world

from core.deletions import Deletion
from core.settings import Settings
from core.tenancy import scoped
from feature_store.online.keys import Keys
from services.pipeline.build import build_pipeline
from services.privacy.eraser import Eraser
from tests.conftest import wait_until

pytestmark = pytest.mark.integration
GONE = "i001"


def test_the_item_cache_reads_a_deleted_item_again_as_soon_as_the_eraser_announces_it(settings: Settings):
    assert settings.retrieval.item_cache_ttl_s >= 30
    seed_state(settings, *small_world())
    pipeline, close = build_pipeline(settings, hot_swap=False)
    other, close_other = build_pipeline(scoped(settings, "acme"), hot_swap=False)
    client = redis.Redis.from_url(settings.redis.url or "")
    try:
        state = pipeline.state
        assert state.items([GONE])[0].active  # type: ignore[union-attr]  # cached for 30 s from here
        producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
        deletion = Deletion(kind="item", subject_id=GONE, requested_at=time.time())
        Eraser(settings, client, producer).erase(deletion)
        producer.close()
        assert client.hget(Keys(settings.redis.key_prefix).item(GONE), "active") in (b"0", b"false")
        wait_until(lambda: pipeline.forgotten.item(GONE), "the process heard of the deletion")
        info = state.items([GONE])[0]
        assert info is None or not info.active, info  # read again: the stub, not the cached row
        assert GONE not in [i for i, _ in state.popular(None, 50, time.time())]

        late, close_late = build_pipeline(settings, hot_swap=False)  # started after the announcement
        try:
            wait_until(lambda: late.forgotten.item(GONE), "a process started later heard of it")
        finally:
            close_late()
        assert not other.forgotten.item(GONE)  # another tenant's stream
    finally:
        client.close()
        close()
        close_other()
