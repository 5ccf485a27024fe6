"""Helpers for lifecycle tests: a small simulated world written to a real parquet archive, and an
in-process serving loop (two-tower top-k -> the world's response -> the archive)."""

from __future__ import annotations

import numpy as np

from core.events import Interaction
from feature_store.archive import ParquetArchive
from models.simulator import World
from services.trainer.data import load_events
from services.trainer.two_tower import TwoTowerBundle, user_sequences

HOUR = 3600.0


def _as_worker_archives(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """Rows as the worker's ArchiveSink writes them: the record plus its Kafka offset."""
    return [{**row, "_offset": n} for n, row in enumerate(rows)]


def archive_catalogue(world: World, archive: ParquetArchive, now: float) -> None:
    rows = [u.model_dump(mode="json") for u in world.item_upserts(now=now)]
    archive.append("items", _as_worker_archives(rows))  # type: ignore[arg-type]


def archive_events(archive: ParquetArchive, events: list[Interaction]) -> None:
    rows = [{**e.model_dump(mode="json"), "categories": []} for e in events]
    archive.append("interactions", _as_worker_archives(rows))  # type: ignore[arg-type]


def organic(world: World, archive: ParquetArchive, n: int, start: float, duration_s: float) -> float:
    archive_events(archive, list(world.traffic(n, start, n / duration_s)))
    return start + duration_s


def recommend(bundle: TwoTowerBundle, histories: dict[str, list[str]], users: list[str],
              items: list[str], k: int) -> dict[str, list[str]]:
    uvec = bundle.user_vectors([histories.get(u, []) for u in users])
    scores = uvec @ bundle.item_vectors(items).T
    # No seen-item filter: with a catalogue this small it would push feeds out of the user's taste.
    return {u: [items[j] for j in np.argsort(-scores[r], kind="stable")[:k]] for r, u in enumerate(users)}


def serve_rounds(world: World, archive: ParquetArchive, bundle: TwoTowerBundle, start: float, rounds: int,
                 round_s: float, k: int = 10) -> float:
    """Each round every user gets a top-k feed from ``bundle`` and reacts; events go to the archive."""
    now = start
    for r in range(rounds):
        histories = user_sequences(load_events(archive, None, now))
        feeds = recommend(bundle, histories, world.user_ids, world.item_ids, k)
        events = [ev for u, items in feeds.items()
                  for ev in world.respond(u, items, now, feed_id=f"f{r}-{u}")]
        archive_events(archive, events)
        now += round_s
    return now


def true_quality(world: World, feeds: dict[str, list[str]]) -> float:
    """Mean true click probability of the recommended items (the simulator's hidden truth)."""
    return float(np.mean([world.click_probs(u, items).mean() for u, items in feeds.items()]))


def taste_alignment(world: World, feeds: dict[str, list[str]]) -> float:
    """Mean share of the user's TRUE current taste that the recommended items' categories carry
    (1/n_categories for a taste-blind feed, up to 1 for a feed fully in the user's top category)."""
    scores = []
    for user, items in feeds.items():
        taste = world.taste(user)
        scores.append(np.mean([np.mean([taste[c] for c in world.item_categories(i)]) for i in items]))
    return float(np.mean(scores))
