"""End to end on the simulator: train and serve, shift the users' preferences, the drift monitor
detects it and retrains, the new model is promoted, feeds move toward the new truth, and the whole
history is in the metadata store. In-process jobs over a real parquet archive, SQLite registry and
file artifact store; serving is the two-tower top-k loop in lifecycle_sim."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import load_settings
from feature_store.archive import ParquetArchive
from funnel.train_two_tower import TwoTowerOptions
from funnel.training import TrainConfig
from models.simulator import World, WorldConfig
from services.scheduler.jobs import Lifecycle
from services.trainer.data import load_events
from services.trainer.two_tower import load_bundle, user_sequences
from tests.integration.lifecycle.lifecycle_sim import (
    HOUR,
    archive_catalogue,
    organic,
    recommend,
    serve_rounds,
    true_quality,
)

pytestmark = pytest.mark.e2e
PHASE = 2 * HOUR
CFG = TrainConfig(two_tower=TwoTowerOptions(dim=32, max_len=20, epochs=8, batch_size=64), min_groups=10)


class Scenario:
    def __init__(self, tmp: Path) -> None:
        self.settings = load_settings(
            data_dir=str(tmp), worker={"content_model": False},
            trainer={"window_s": PHASE, "holdout_fraction": 0.2, "promotion_margin": 0.05},
            drift={"window_s": PHASE})
        self.world = World(WorldConfig(n_users=20, n_items=100, seed=5))
        self.archive = ParquetArchive(self.settings.archive_dir)
        self.now = self.world.config.epoch
        self.lc = Lifecycle(self.settings, archive=self.archive, cfg=CFG, clock=lambda: self.now)
        self.tmp = tmp
        archive_catalogue(self.world, self.archive, self.now)

    def active(self, tag: str):  # -> TwoTowerServing
        version = self.lc.store.active_version("two_tower")
        return load_bundle(self.lc.store.fetch("two_tower", version, self.tmp / "fetch" / tag))

    def phase(self, n_organic: int, rounds: int, tag: str) -> None:
        """Organic traffic plus ``rounds`` of feeds served by the active model, PHASE seconds long."""
        start = self.now
        organic(self.world, self.archive, n_organic, start, PHASE)
        serve_rounds(self.world, self.archive, self.active(tag), start + 1, rounds, PHASE / rounds)
        self.now = start + PHASE

    def feeds(self, bundle) -> dict[str, list[str]]:
        histories = user_sequences(load_events(self.archive, None, self.now))
        return recommend(bundle, histories, self.world.user_ids, self.world.item_ids, 10)


def test_preference_shift_is_detected_retrained_promoted_and_feeds_follow(tmp_path: Path) -> None:
    sc = Scenario(tmp_path)
    sc.now = organic(sc.world, sc.archive, 5000, sc.now, PHASE)
    assert sc.lc.train("bootstrap").decision("two_tower").promoted
    sc.phase(4000, 3, "v0")                                           # 1. serve, then train on it
    trained = sc.lc.train("schedule").decision("two_tower")
    assert trained is not None and trained.promoted, trained
    sc.phase(4000, 3, "v1")
    control = sc.lc.drift("schedule")                                  # same world: no drift
    assert control.result is not None and not control.result.drifted, control.result.reasons
    serving_before = sc.active("before")

    sc.world.shift_preferences(1.0, seed=1)                           # 2. the world changes
    sc.phase(4000, 3, "v1-shifted")
    drift = sc.lc.drift("schedule")                                    # 3. detected -> retrain
    assert drift.result is not None and drift.result.drifted
    assert any("clicked_category" in r or "centroid" in r for r in drift.result.reasons)
    assert drift.triggered_run_id is not None

    new = sc.lc.meta.active_model("two_tower")                         # 4. promoted
    assert new is not None and new.version != serving_before.version
    assert new.job_run_id == drift.triggered_run_id
    assert new.metrics["ndcg@10"] >= new.baseline_metrics["ndcg@10"] - 0.05
    serving_after = sc.active("after")
    assert serving_after.version == new.version

    before = true_quality(sc.world, sc.feeds(serving_before))          # 5. same histories, new truth
    after = true_quality(sc.world, sc.feeds(serving_after))
    assert after > before * 1.05, (before, after)

    meta = sc.lc.meta                                                  # 6. the history
    statuses = {m.version: m.status for m in meta.models("two_tower")}
    assert list(statuses.values()).count("active") == 1 and statuses[serving_before.version] == "retired"
    reports = meta.drift_reports()
    assert [r.drifted for r in reports] == [True, False]
    assert reports[0].triggered_job_run_id == drift.triggered_run_id
    assert Path(reports[0].report_path).is_file()
    assert "<svg" in Path(reports[0].report_path).read_text()
    runs = [(r.job, r.trigger, r.outcome) for r in reversed(meta.jobs(limit=100))]
    assert runs.count(("train", "drift", "success")) == 1
    assert runs.count(("drift", "schedule", "success")) == 2
    assert sum(1 for j, _, o in runs if j == "index" and o == "success") == 3
    assert meta.active_index() is not None and meta.active_index().model_version == new.version
