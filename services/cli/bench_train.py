"""``streamrec bench train --events N --json PATH``: the time of one full retrain on N events.

A seeded simulated world writes N interactions (and its catalogue) into a fresh parquet archive;
the timed part is exactly what the scheduler's train job does: read the window from the archive,
split by time, encode content, fit the two-tower, evaluate it (and the active model) on the
holdout, publish and promote. Output JSON: ``train_seconds`` plus the phases and sizes.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import typer

from core.settings import Settings, load_settings
from feature_store.archive import ParquetArchive
from models.simulator import World, WorldConfig
from services.artifacts import open_store
from services.metadata import MetadataStore
from services.trainer.job import run_training

app = typer.Typer(help="Retrain benchmark.")
log = logging.getLogger(__name__)
CHUNK = 200_000


def _world(n_events: int, seed: int) -> World:
    users = max(200, min(20_000, n_events // 100))
    items = max(500, min(20_000, n_events // 50))
    return World(WorldConfig(n_users=users, n_items=items, seed=seed))


def write_events(archive: ParquetArchive, world: World, n_events: int, duration_s: float) -> float:
    """Catalogue + ``n_events`` organic interactions over ``duration_s``; returns the end time."""
    start = world.config.epoch
    archive.append("items", [u.model_dump(mode="json") for u in world.item_upserts(now=start)])
    rate = n_events / duration_s
    stream = world.traffic(n_events, start, rate)
    done = 0
    while done < n_events:
        batch = [next(stream).model_dump(mode="json") for _ in range(min(CHUNK, n_events - done))]
        archive.append("interactions", batch)
        done += len(batch)
    return start + duration_s


def run_train_bench(settings: Settings, events: int, seed: int = 0) -> dict[str, Any]:
    archive = ParquetArchive(settings.archive_dir)
    world = _world(events, seed)
    t0 = time.perf_counter()
    now = write_events(archive, world, events, duration_s=min(settings.trainer.window_s, 7 * 86400.0))
    generate_s = time.perf_counter() - t0
    meta, store = MetadataStore(settings.database_url), open_store(settings.artifacts_url)
    t1 = time.perf_counter()
    out = run_training(settings, meta, store, archive, "bench", now + 1)
    train_s = time.perf_counter() - t1
    run = meta.jobs("train", 1)[0]
    return {"train_seconds": round(train_s, 3), "events": events, "users": len(world.user_ids),
            "items": len(world.item_ids), "generate_seconds": round(generate_s, 3),
            "phase_seconds": run.details.get("phase_seconds"),
            "train_events": run.details.get("train_events"),
            "metrics": {d.kind: d.metrics for d in out.decisions},
            "promoted": {d.kind: d.promoted for d in out.decisions}, "outcome": run.outcome,
            "not_trained": {"ranker": run.details["ranker"]} if "ranker" in run.details else {}}


@app.command()
def train(events: int = typer.Option(1_000_000, "--events", min=1000),
          json_path: Path | None = typer.Option(None, "--json"),
          config: Path | None = typer.Option(None, "--config", "-c"),
          seed: int = typer.Option(0, "--seed")) -> None:
    """Time one retrain (data from the archive -> fit -> evaluate -> publish) on EVENTS events."""
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        base = load_settings(config)
        settings = base.model_copy(update={"data_dir": Path(tmp), "database": base.database.model_copy(
            update={"url": None}), "artifacts": base.artifacts.model_copy(update={"url": None})})
        result = run_train_bench(settings, events, seed)
    text = json.dumps(result, indent=2)
    typer.echo(text)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(text + "\n")
