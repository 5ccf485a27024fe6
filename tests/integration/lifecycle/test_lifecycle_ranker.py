"""The trainer's ranker path on the archive: served feeds and organic positives -> label groups whose
features the funnel computes point in time -> the multi-task ranker, gated on held-out groups against
the heuristic that serves meanwhile, published as a ``ranker`` artifact that serving loads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.settings import load_settings
from feature_store.archive import ParquetArchive
from funnel.features import FEATURES
from funnel.train_two_tower import TwoTowerOptions
from funnel.training import TrainConfig
from models.ranker_serving import RankerServing
from models.simulator import World, WorldConfig
from services.artifacts import Loader
from services.scheduler.jobs import Lifecycle
from tests.integration.lifecycle.lifecycle_sim import HOUR, archive_catalogue, archive_events, organic

pytestmark = pytest.mark.integration
CFG = TrainConfig(two_tower=TwoTowerOptions(dim=16, max_len=20, epochs=3, batch_size=64), min_groups=10)


def _served(world: World, archive: ParquetArchive, start: float, rounds: int) -> float:
    """Feeds of the users' true favourites mixed with random items, and the users' responses."""
    rng = np.random.default_rng(0)
    now = start
    for r in range(rounds):
        events = []
        for u in world.user_ids:
            noise = [str(i) for i in rng.choice(world.item_ids, 6, replace=False)]
            shown = world.true_top_items(u, 4) + noise
            events += world.respond(u, list(dict.fromkeys(shown)), now, feed_id=f"f{r}-{u}")
        archive_events(archive, events)
        now += 60.0
    return now


def test_ranker_is_trained_on_point_in_time_groups_gated_and_loadable(tmp_path: Path) -> None:
    settings = load_settings(data_dir=str(tmp_path), worker={"content_model": False},
                             trainer={"window_s": 10 * HOUR, "holdout_fraction": 0.25})
    world = World(WorldConfig(n_users=40, n_items=60, seed=4))
    archive = ParquetArchive(settings.archive_dir)
    archive_catalogue(world, archive, world.config.epoch)
    users = [{**u.model_dump(mode="json"), "_offset": n} for n, u in enumerate(world.user_upserts())]
    archive.append("users", users)
    now = organic(world, archive, 3000, world.config.epoch, 2 * HOUR)
    now = _served(world, archive, now, rounds=12)
    lc = Lifecycle(settings, archive=archive, cfg=CFG, clock=lambda: now + 1)
    out = lc.train("manual")
    first = out.decision("ranker")
    assert first is not None, lc.meta.jobs("train", 1)[0].details
    assert first.promoted and first.metrics["baseline"] == "heuristic"
    assert first.metrics["ndcg@10"] >= first.baseline["ndcg@10"] > 0.0
    details = lc.meta.jobs("train", 1)[0].details["training"]
    assert details["feed_groups"] > 0 and details["groups"] > details["feed_groups"]
    loader: Loader[RankerServing] = Loader(lc.store, "ranker", lambda p, m: RankerServing.load(p),
                                           tmp_path / "cache")
    assert loader.poll() and loader.version == first.version
    assert loader.value.feature_names == FEATURES
    heads = loader.value.score_arrays(np.zeros((2, len(FEATURES)), np.float32))
    assert set(heads) >= {"click", "deep", "score"} and len(heads["click"]) == 2
    row = lc.meta.get_model("ranker", first.version)
    assert row is not None and row.status == "active" and row.checksum
