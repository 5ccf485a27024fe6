"""Experiments reload from the settings file without a restart; a malformed version is refused naming
its key while the last good one keeps serving; pinned ranker versions load beside the active one."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.settings import Settings, load_settings
from feature_store.online.memory_state import MemoryOnline
from funnel.experiments import Experiments
from funnel.modelset import ModelSet
from funnel.pipeline import Pipeline
from services.pipeline.experiments import ExperimentWatcher, PinnedRankers

NOW = 1_700_000_000.0
USERS = [f"u{k}" for k in range(30)]


def _config(name: str, control_share: float = 0.5) -> str:
    return f"""
[[experiments]]
name = "{name}"
start = {NOW - 3600}
end = {NOW + 3600}
arms = [{{ name = "control", share = {control_share} }},
        {{ name = "treatment", share = 0.5, overrides = {{ explore_slots = 0 }} }}]
"""


def _wait(cond: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def _served(p: Pipeline) -> set[str]:
    return {name for u in USERS for name in p.feed(u, n=5, now=NOW).feed.experiments}


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def test_experiments_reload_without_restart_and_a_bad_version_keeps_the_last_good(tmp_path: Path):
    path = tmp_path / "streamrec.toml"
    _write(path, _config("first"))
    settings = load_settings(path)
    pipeline = Pipeline(settings, MemoryOnline(settings), clock=lambda: NOW)
    pipeline.experiments = router = Experiments(settings.experiments)
    watcher = ExperimentWatcher(path, router, interval_s=0.05).start()
    try:
        assert _served(pipeline) == {"first"}
        _write(path, _config("second"))
        assert _wait(lambda: _served(pipeline) == {"second"})
        assert watcher.error is None and watcher.loaded_at is not None
        for bad, key in ((_config("third", control_share=0.7), "experiments.0"),
                         ("[[experiments]\nname = 'x'", "not valid TOML"),
                         (_config("third").replace("explore_slots", "explore_slotz"),
                          "experiments.0.arms.1.overrides.explore_slotz")):
            _write(path, bad)
            assert _wait(lambda k=key: k in (watcher.error or "")), (bad, watcher.error)
            assert _served(pipeline) == {"second"}  # the last good config keeps serving
        _write(path, _config("fourth"))
        assert _wait(lambda: _served(pipeline) == {"fourth"}) and watcher.error is None
        path.unlink()
        assert _wait(lambda: watcher.error is not None and "gone" in watcher.error)
        assert _served(pipeline) == {"fourth"}
    finally:
        watcher.stop()


class _Store:
    def __init__(self, broken: set[str]) -> None:
        self.broken, self.fetches = broken, 0

    def manifest(self, kind: str, version: str) -> dict[str, str]:
        return {"version": version}

    def fetch(self, kind: str, version: str, dest: Path) -> Path:
        self.fetches += 1
        if version in self.broken:
            raise OSError(f"{version} is corrupt")
        return dest


class _Ranker:
    feature_names = ("popular_score",)

    def __init__(self, version: str) -> None:
        self.version = version

    def score_arrays(self, dense: np.ndarray) -> dict[str, np.ndarray]:
        return {"click": np.zeros(len(dense), np.float32)}


def test_pinned_rankers_load_in_the_background_bounded_and_fail_softly(tmp_path: Path):
    store = _Store(broken={"5"})
    pinned = PinnedRankers(store, lambda path, manifest: _Ranker(manifest["version"]), tmp_path)
    try:
        active = ModelSet(ranker=_Ranker("9"))  # type: ignore[arg-type]
        pinned.want({"7", "5"})
        assert _wait(lambda: "7" in pinned.loaded and "5" in pinned.failed)
        got = pinned.resolve("7", active)
        assert got is not None and got.model_version == "7" and pinned.resolve("5", active) is None
        assert "corrupt" in pinned.status()["failed"]["5"]
        pinned.want({"1", "2", "3", "4"})  # over the limit: the first three, 7 unloaded
        assert _wait(lambda: set(pinned.loaded) == {"1", "2", "3"})
        assert pinned.resolve("7", active) is None and pinned.resolve("4", active) is None
    finally:
        pinned.stop()


@pytest.fixture
def _no_env(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv("STREAMREC_EXPERIMENTS", raising=False)
    monkeypatch.delenv("STREAMREC_CONFIG", raising=False)


def test_no_file_no_watcher(_no_env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    assert ExperimentWatcher.from_settings(Settings(), Experiments()) is None
    (tmp_path / "streamrec.toml").write_text(_config("x"))
    assert ExperimentWatcher.from_settings(Settings(), Experiments()) is not None
    monkeypatch.setenv("STREAMREC_EXPERIMENTS", "[]")  # the environment wins over the file: no reload
    assert ExperimentWatcher.from_settings(Settings(), Experiments()) is None
