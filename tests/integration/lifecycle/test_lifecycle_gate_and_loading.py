"""The promotion gate (a worse model is not promoted, the active one keeps serving) and refused
artifacts (corrupted / truncated model and index files: last good keeps serving, failure recorded)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from core.settings import Settings, load_settings
from feature_store.archive import ParquetArchive
from funnel.log import EventLog
from funnel.train_two_tower import TwoTowerOptions
from funnel.training import TrainConfig, validation
from models.index import ItemIndex
from models.simulator import World, WorldConfig
from models.two_tower import TwoTowerModel
from models.two_tower_serving import TwoTowerServing
from services.artifacts import Loader
from services.artifacts.wiring import loader_from_settings
from services.metadata import MetadataStore
from services.scheduler.jobs import Lifecycle
from services.trainer.data import load_events, training_catalog
from services.trainer.job import two_tower_gate
from services.trainer.promotion import gate_and_publish
from tests.integration.lifecycle.lifecycle_sim import HOUR, archive_catalogue, organic

pytestmark = pytest.mark.integration
CFG = TrainConfig(two_tower=TwoTowerOptions(dim=16, max_len=20, epochs=15, batch_size=64), min_groups=10)


def _settings(data_dir: Path) -> Settings:
    return load_settings(data_dir=str(data_dir), worker={"content_model": False},
                         trainer={"window_s": 10 * HOUR, "holdout_fraction": 0.2})


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """A data dir with an archive, an active two-tower and an active index (built once)."""
    root = tmp_path_factory.mktemp("lifecycle-trained")
    settings = _settings(root)
    world = World(WorldConfig(n_users=30, n_items=80, seed=2))
    archive = ParquetArchive(settings.archive_dir)
    archive_catalogue(world, archive, world.config.epoch)
    now = organic(world, archive, 4000, world.config.epoch, 2 * HOUR)
    lc = Lifecycle(settings, archive=archive, cfg=CFG, clock=lambda: now)
    assert lc.train("schedule").decision("two_tower").promoted
    lc.meta.close()
    return root, now


@pytest.fixture
def env(trained: tuple[Path, float], tmp_path: Path) -> Iterator[tuple[Lifecycle, float]]:
    root, now = trained
    shutil.copytree(root, tmp_path / "data")
    settings = _settings(tmp_path / "data")
    lc = Lifecycle(settings, cfg=CFG, clock=lambda: now)
    yield lc, now
    lc.meta.close()


def _worse_model(like: TwoTowerServing) -> TwoTowerServing:
    torch.manual_seed(123)
    model = TwoTowerModel(like.model.cfg)  # untrained weights, same shape and vocabulary
    model.items.content.copy_(like.model.items.content)
    return TwoTowerServing(model, like.item_ids, meta=like.meta)


def _load_tower(path: Path, manifest: object) -> TwoTowerServing:
    return TwoTowerServing.load(path)


def _load_index(path: Path, manifest: object) -> ItemIndex:
    return ItemIndex.load(path)


def test_worse_model_is_not_promoted_and_active_keeps_serving(env: tuple[Lifecycle, float],
                                                              tmp_path: Path) -> None:
    lc, now = env
    loader: Loader[TwoTowerServing] = Loader(lc.store, "two_tower", _load_tower, tmp_path / "cache")
    assert loader.poll()
    serving = loader.version
    window = (now - lc.settings.trainer.window_s, now)
    events = EventLog.from_frame(load_events(lc.archive, *window))
    catalog = training_catalog(lc.archive, now, use_model=False)
    val = validation(events, catalog, CFG)
    worse = _worse_model(loader.value)
    gate = two_tower_gate(lc.settings, lc.store, worse, val, catalog, window, len(events))
    decision = gate_and_publish(lc.store, lc.meta, gate, lc.settings.trainer.promotion_margin)
    assert not decision.promoted and "not promoted" in decision.reason
    assert decision.metrics["ndcg@10"] < decision.baseline["ndcg@10"]
    row = lc.meta.get_model("two_tower", decision.version)
    assert row is not None and row.status == "rejected" and row.reason == decision.reason
    assert lc.meta.active_model("two_tower").version == serving == lc.store.active_version("two_tower")
    assert loader.poll() is False and loader.version == serving


def _republish_broken(lc: Lifecycle, kind: str, damage: str) -> str:
    """Publish a copy of the active version, then damage a payload file in the store after the fact."""
    src = lc.store.fetch(kind, lc.store.active_version(kind), lc.settings.data_dir / "copy" / damage)
    files = {p.name: p for p in src.iterdir() if p.is_file() and p.name != "artifact.json"}
    version = lc.store.publish(kind, files, {"test": damage})
    target = lc.settings.artifacts_url.removeprefix("file://")
    blob = max((p for p in (Path(target) / kind / version).iterdir() if p.name != "artifact.json"),
               key=lambda p: p.stat().st_size)
    data = blob.read_bytes()
    blob.write_bytes(data[: len(data) // 2] if damage == "truncate" else data[:-8] + b"\x00" * 8)
    lc.store.set_active(kind, version, f"broken ({damage})")
    return version


@pytest.mark.parametrize("kind,load", [("two_tower", _load_tower), ("index", _load_index)])
@pytest.mark.parametrize("damage", ["truncate", "corrupt"])
def test_damaged_artifacts_are_refused_last_good_serves_failure_recorded(
        env: tuple[Lifecycle, float], kind: str, load, damage: str) -> None:
    lc, _ = env
    loader = loader_from_settings(lc.settings, kind, load)
    assert loader.poll()
    good = loader.version
    bad = _republish_broken(lc, kind, damage)
    assert loader.poll() is False
    assert loader.version == good and loader.value is not None
    if kind == "index":  # the last good index still answers
        ids, _ = loader.value.search(np.ones((1, loader.value.dim), np.float32), 3)
        assert len(ids[0]) == 3
    failures = [r for r in MetadataStore(lc.settings.database_url).jobs(f"load_{kind}")]
    assert [(r.outcome, r.details["version"]) for r in failures] == [("failed", bad)]
    assert ("truncated" if damage == "truncate" else "checksum") in failures[0].error


def test_checksum_valid_but_unloadable_payload_is_refused(env: tuple[Lifecycle, float],
                                                          tmp_path: Path) -> None:
    lc, _ = env
    loader: Loader[TwoTowerServing] = Loader(lc.store, "two_tower", _load_tower, tmp_path / "cache")
    assert loader.poll()
    good = loader.version
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "weights.pt").write_bytes(b"not a state dict")
    (junk / "items.json").write_text("[]")
    (junk / "manifest.json").write_text("{}")
    lc.store.set_active("two_tower", lc.store.publish_dir("two_tower", junk, {}))
    assert loader.poll() is False and loader.version == good
    assert "ArtifactError" in loader.failures[-1].error or "artifact" in loader.failures[-1].error
