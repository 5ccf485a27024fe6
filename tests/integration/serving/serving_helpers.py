"""Shared helpers for the serving integration tests (seed Redis through the worker's real writer)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from core.events import Interaction, ItemUpsert
from core.settings import Settings
from feature_store import transforms as tf
from feature_store.online import resp
from feature_store.online.batch import effect_params
from feature_store.online.keys import Keys
from feature_store.online.writer import OnlineWriter, StatsDelta
from iokit import http_ok


def seed_state(settings: Settings, items: Sequence[ItemUpsert], events: Sequence[Interaction]) -> None:
    """Writes as the stream worker does with these settings (its writer, effect and transform params)."""
    async def run() -> None:
        r = resp.connect(settings.redis.url or "", 1.0, 30.0)
        w = OnlineWriter(r, Keys(settings.redis.key_prefix), effect_params(settings), 3600,
                         tf.TransformParams.from_settings(settings))
        if items:
            await w.apply_items([(None, it) for it in items], {}, {}, {}, StatsDelta("items"))
        if events:
            await w.apply_interactions([(None, e) for e in events], {}, {}, StatsDelta("interactions"))
        await r.close()

    asyncio.run(run())


def small_world(n_items: int = 30, n_users: int = 8) -> tuple[list[ItemUpsert], list[Interaction]]:
    """Item j is clicked by (n_items - j) // 3 users: popularity strictly falls with j (in steps)."""
    now = time.time()
    items = [ItemUpsert(item_id=f"i{j:03d}", categories=[f"c{j % 4}"], created_at=now - 86400 * (1 + j))
             for j in range(n_items)]
    events = []
    for j in range(n_items):
        for k in range(max(n_items - j, 0)):
            events.append(Interaction(event_id=f"e{j}-{k}", user_id=f"pop{k}", item_id=f"i{j:03d}",
                                      type="click", timestamp=now - 60, context={"device": "mobile"}))
    for u in range(n_users):
        events.append(Interaction(event_id=f"seen{u}", user_id=f"u{u}", item_id="i000", type="click",
                                  timestamp=now - 30))
    return items, events


def wait_ready(ops_url: str, timeout_s: float = 30.0) -> None:
    """Until ``ops_url``/readyz answers 200 (an API process's ops port), else an AssertionError."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if http_ok(f"{ops_url}/readyz"):
            return
        time.sleep(0.2)
    raise AssertionError(f"API at {ops_url} never became ready")
