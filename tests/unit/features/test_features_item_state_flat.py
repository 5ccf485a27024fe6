"""The worker's Feast rows parse an item's stored hash straight from the HGETALL reply
(``item_merge.item_state_flat``): the same state as ``item_state`` of the decoded hash."""

from __future__ import annotations

import random

from core.events import Interaction, InteractionType, ItemUpsert
from feature_store import transforms as tf
from feature_store.online import item_merge
from feature_store.online.item_merge import ItemDelta


def _stored(seed: int) -> dict[str, str]:
    """A hash as the merge leaves it after a few batches of impressions, clicks and upserts."""
    rng = random.Random(seed)
    fields: dict[str, str] = {}
    t0 = 1_700_000_000.0
    for b in range(6):
        delta = ItemDelta()
        if b == 2:
            delta.add_upsert(ItemUpsert(item_id="i1", created_at=t0 - 50.5, timestamp=t0 + 1.25))
        for _ in range(40):
            kind = rng.choice([InteractionType.IMPRESSION, InteractionType.CLICK, InteractionType.LIKE])
            ts = t0 + b * 900 + rng.uniform(0, 7200)
            delta.add_event(Interaction(event_id=f"e{rng.random()}", user_id="u", item_id="i1",
                                        type=kind, timestamp=ts))
        item_merge.merge(fields, delta)
    return fields


def _flat(fields: dict[str, str]) -> list[bytes]:
    return [x.encode() for kv in fields.items() for x in kv]


def test_flat_reply_gives_the_decoded_hash_state() -> None:
    for seed in range(5):
        fields = _stored(seed)
        assert any(f.startswith("mi:") for f in fields) and "t" in fields and "c" in fields
        got = item_merge.item_state_flat("i1", _flat(fields))
        assert got == item_merge.item_state("i1", fields)
        assert tf.project_item_realtime(got) == tf.project_item_realtime(item_merge.item_state("i1", fields))


def test_fields_missing_or_foreign_are_defaults_or_ignored() -> None:
    got = item_merge.item_state_flat("i2", _flat({"lm": "5", "lh": "0", "pm": "5", "mc:5": "3"}))
    assert got.minutes == {5: [0, 3]} and got.hours == {}
    assert got.created_at is None and got.last_event_ts == 0.0 and got.ts_us == 0
    assert got == item_merge.item_state("i2", {"lm": "5", "lh": "0", "pm": "5", "mc:5": "3"})
