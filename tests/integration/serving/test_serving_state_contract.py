"""SERVING's batched Redis reads agree with STREAMS' OnlineReader on the same state (layout drift guard)."""

from __future__ import annotations

import numpy as np
import pytest
from serving_helpers import seed_state, small_world

from core.settings import Settings
from feature_store.online.readers import OnlineReader
from services.pipeline.build import redis_client
from services.pipeline.redis_state import RedisState


def test_redis_state_matches_online_reader(settings: Settings):
    items, events = small_world(n_items=20)
    seed_state(settings, items, events)
    mine, theirs = RedisState(redis_client(settings), settings), OnlineReader.from_settings(settings)
    for segment, key in ((None, "all"), ("mobile", "device:mobile")):
        a, b = mine.popular(segment, 10), theirs.popular(key, 10)
        assert [i for i, _ in a] == [i for i, _ in b]
        assert [s for _, s in a] == pytest.approx([s for _, s in b], rel=1e-3)
    assert [i for i, _ in mine.fresh(5)] == [i for i, _ in theirs.fresh(5)]
    user = mine.user("pop3")
    assert user.seen == theirs.seen("pop3") and user.recent == theirs.recent("pop3")
    recent = user.recent[:10]
    assert {i for i, _ in user.covisit or []} - set(recent) == {i for i, _ in theirs.covisit(recent)}
    ids = [it.item_id for it in items[:5]]
    for x, y in zip(mine.posteriors("mobile", ids), theirs.posteriors("device:mobile", ids), strict=True):
        np.testing.assert_allclose(x, y)
    info = mine.items(ids[:1])[0]
    rec = theirs.items(ids[:1])[0]
    assert info is not None and rec is not None and info.categories == rec["categories"]
