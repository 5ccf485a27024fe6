"""The scheduler trains on its own once enough new interactions arrived (trainer.min_new_events),
counted from the worker's durable stats, and not again until as many more arrived."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import load_settings
from feature_store.archive import ParquetArchive
from funnel.train_two_tower import TwoTowerOptions
from funnel.training import TrainConfig
from models.simulator import World, WorldConfig
from services.scheduler.jobs import Lifecycle
from tests.integration.lifecycle.lifecycle_sim import HOUR, archive_catalogue, organic

pytestmark = pytest.mark.integration
CFG = TrainConfig(two_tower=TwoTowerOptions(dim=16, max_len=20, epochs=2, batch_size=64), min_groups=10)


def test_training_follows_the_event_count(tmp_path: Path) -> None:
    settings = load_settings(data_dir=str(tmp_path), worker={"content_model": False},
                             trainer={"window_s": 10 * HOUR, "min_new_events": 1000})
    world = World(WorldConfig(n_users=20, n_items=50, seed=1))
    archive = ParquetArchive(settings.archive_dir)
    archive_catalogue(world, archive, world.config.epoch)
    now = organic(world, archive, 1500, world.config.epoch, HOUR)
    count = {"n": 900}
    lc = Lifecycle(settings, archive=archive, cfg=CFG, clock=lambda: now, events=lambda: count["n"])
    assert lc.train_if_due() is None and not lc.meta.jobs("train")     # 900 < 1000: nothing yet
    count["n"] = 1500
    first = lc.train_if_due()
    assert first is not None and first.decision("two_tower") is not None
    run = lc.meta.jobs("train", 1)[0]
    assert run.trigger == "events" and run.details["events_seen"] == 1500
    count["n"] = 2400
    assert lc.train_if_due() is None                                   # 900 more: not yet
    count["n"] = 2500
    assert lc.train_if_due() is not None and len(lc.meta.jobs("train")) == 2
    lc.events = lambda: None                                           # count unknown: never trains
    count["n"] = 10_000
    assert lc.train_if_due() is None and len(lc.meta.jobs("train")) == 2
