"""The trainer's ranker path: labelled impressions + point-in-time Feast features -> multi-task ranker,
gated on holdout click AUC, published as a ``ranker`` artifact that serving can load."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core.settings import load_settings
from feature_store.archive import ParquetArchive
from models.ranker_serving import RankerServing
from models.simulator import World, WorldConfig
from services.artifacts import Loader
from services.scheduler.jobs import Lifecycle
from services.trainer.ranker import impression_labels
from services.trainer.two_tower import TwoTowerOptions
from tests.integration.lifecycle.lifecycle_sim import HOUR, archive_catalogue, organic

pytestmark = pytest.mark.integration
OPTS = TwoTowerOptions(dim=16, max_len=20, n_layers=1, epochs=2, batch_size=64, content={"use_model": False})


def test_impression_labels_join_only_later_actions_of_the_same_pair() -> None:
    ev = pd.DataFrame({
        "user_id": ["u", "u", "u", "u", "v"], "item_id": ["a", "a", "b", "a", "b"],
        "type": ["impression", "click", "impression", "like", "click"],
        "value": [1.0] * 5, "timestamp": [10.0, 11.0, 12.0, 9.0, 13.0]})
    labels = impression_labels(ev.sort_values("timestamp"), 100).sort_values("item_id")
    assert labels["click"].tolist() == [1.0, 0.0]  # v's click on b is not u's
    assert labels["deep"].tolist() == [0.0, 0.0]   # the like came before the impression


def test_impression_labels_keep_to_their_window_and_see_clicks_across_it() -> None:
    ev = pd.DataFrame({
        "user_id": ["u"] * 6, "item_id": ["a", "b", "a", "c", "d", "e"],
        "type": ["impression", "impression", "click", "impression", "impression", "impression"],
        "value": [1.0] * 6, "timestamp": [1.0, 2.0, 6.0, 5.0, 7.0, 8.0]}).sort_values("timestamp")
    before = impression_labels(ev, 10, before=5.0)
    assert before["item_id"].tolist() == ["a", "b"]
    assert before["click"].tolist() == [1.0, 0.0]  # a's click came after the cut, still counted
    after = impression_labels(ev, 2, since=5.0)
    assert after["item_id"].tolist() == ["d", "e"]  # the newest two of c, d, e


def test_ranker_is_trained_on_point_in_time_features_gated_and_loadable(tmp_path: Path) -> None:
    settings = load_settings(data_dir=str(tmp_path), feast={"project": f"lc_{tmp_path.name[-8:]}".replace(
        "-", "_")}, trainer={"window_s": 10 * HOUR, "holdout_fraction": 0.25, "epochs": 2})
    world = World(WorldConfig(n_users=25, n_items=60, seed=4))
    archive = ParquetArchive(settings.archive_dir)
    archive_catalogue(world, archive, world.config.epoch)
    archive.append("users", [u.model_dump(mode="json") for u in world.user_upserts()])
    now = organic(world, archive, 3000, world.config.epoch, 2 * HOUR)
    lc = Lifecycle(settings, archive=archive, opts=OPTS, clock=lambda: now)
    first = lc.train("manual").decision("ranker")
    assert first is not None and first.promoted and 0.0 <= first.metrics["auc.click"] <= 1.0
    assert first.metrics["rows"] > 0
    loader: Loader[RankerServing] = Loader(lc.store, "ranker", lambda p, m: RankerServing.load(p),
                                           tmp_path / "cache")
    assert loader.poll() and loader.version == first.version
    heads = loader.value.score({"history_len": 3}, [{"ctr_1h": 0.1, "impressions_1h": 5}, {}])
    assert set(heads) >= {"click", "deep", "score"} and len(heads["click"]) == 2
    row = lc.meta.get_model("ranker", first.version)
    assert row is not None and row.status == "active" and row.checksum
