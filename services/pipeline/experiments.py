"""Serving wiring of experiments: the settings file watched for new ``[[experiments]]`` (reloaded
without a restart; a malformed version is refused with its keys named and the last good one keeps
serving), and the ranker versions that arms pin, loaded beside the active one (at most
``PinnedRankers.LIMIT`` at a time, in a background thread: a request never waits for a load)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from core.settings import ConfigError, Settings, config_file, load_experiments
from funnel.experiments import Experiments
from funnel.modelset import ModelSet
from funnel.pipeline import Pipeline

log = logging.getLogger(__name__)
ENV_OVERRIDE = "STREAMREC_EXPERIMENTS"


class ExperimentWatcher:
    """Polls the file's (mtime, size) every ``interval_s``; on a change, parses only the experiments
    and swaps them into ``experiments``. ``error`` holds the last refusal (None once a good version
    loads); ``loaded_at`` the time of the last good load."""

    def __init__(self, path: Path, experiments: Experiments, interval_s: float) -> None:
        self.path, self.experiments, self.interval_s = Path(path), experiments, interval_s
        self.error: str | None = None
        self.loaded_at: float | None = None
        self._seen = self._stamp()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Settings, experiments: Experiments) -> ExperimentWatcher | None:
        """None when there is no file to watch, or the environment sets the experiments (env wins)."""
        path = config_file()
        if path is None or os.environ.get(ENV_OVERRIDE):
            return None
        return cls(path, experiments, settings.experiments_reload_s)

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def check(self) -> bool:
        """One poll. True when a new version was loaded and is now serving."""
        stamp = self._stamp()
        if stamp == self._seen:
            return False
        self._seen = stamp
        if stamp is None:
            self.error = f"{self.path} is gone; still serving the last experiments"
            log.error(self.error)
            return False
        try:
            self.experiments.swap(load_experiments(self.path))
        except ConfigError as exc:
            self.error = f"{exc} (keys: {', '.join(exc.keys)}); still serving the last good experiments"
            log.error("experiments in %s refused: %s", self.path, self.error)
            return False
        self.error, self.loaded_at = None, time.time()
        names = [e.name for e in self.experiments.experiments]
        log.info("experiments reloaded from %s: %s", self.path, names)
        return True

    def start(self) -> ExperimentWatcher:
        self._thread = threading.Thread(target=self._run, name="experiments-watch", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - a watcher bug must not stop serving
                log.exception("checking %s failed", self.path)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def status(self) -> dict[str, Any]:
        return {"path": str(self.path), "error": self.error, "loaded_at": self.loaded_at,
                "reload_s": self.interval_s}


class PinnedRankers:
    """Implements ``funnel.experiments.ModelResolver`` over the artifact store: the ranker versions
    that experiment arms name, loaded in a background thread, at most ``LIMIT`` of them (the rest are
    refused, logged, and their arms serve the active model, which their feeds' model_version shows)."""

    LIMIT = 3
    RETRY_S = 30.0

    def __init__(self, store: Any, load: Any, workdir: Path, kind: str = "ranker") -> None:
        self.store, self.load, self.workdir, self.kind = store, load, Path(workdir), kind
        self.loaded: dict[str, Any] = {}
        self.failed: dict[str, tuple[float, str]] = {}
        self._wanted: set[str] = set()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pinned-rankers", daemon=True)
        self._thread.start()

    @classmethod
    def from_settings(cls, settings: Settings) -> PinnedRankers | None:
        from services.artifacts.wiring import store_from_settings
        from services.pipeline.loaders import load_functions

        try:
            load = load_functions(settings)["ranker"]
        except ImportError as exc:
            log.warning("pinned model versions unavailable (%s)", exc)
            return None
        workdir = settings.data_dir / "artifact-cache" / str(os.getpid()) / "pinned"
        return cls(store_from_settings(settings), load, workdir)

    def want(self, versions: set[str]) -> None:
        keep = set(sorted(versions)[: self.LIMIT])
        if len(versions) > self.LIMIT:
            log.error("experiments pin %d ranker versions; only %d are kept loaded: %s (the others "
                      "serve the active model)", len(versions), self.LIMIT, sorted(keep))
        self._wanted = keep
        self.loaded = {v: m for v, m in self.loaded.items() if v in keep}
        self._wake.set()

    def load_now(self, version: str) -> bool:
        """Loads ``version`` in the caller's thread (a command line tool, not serving)."""
        self._wanted = self._wanted | {version}
        self._load(version)
        return version in self.loaded

    def resolve(self, version: str, current: ModelSet) -> ModelSet | None:
        ranker = self.loaded.get(version)
        return None if ranker is None else replace(current, ranker=ranker)

    def _run(self) -> None:
        while not self._stop.is_set():
            for version in sorted(self._wanted - set(self.loaded)):
                last = self.failed.get(version)
                if last is None or time.monotonic() - last[0] > self.RETRY_S:
                    self._load(version)
            self._wake.wait(self.RETRY_S)
            self._wake.clear()

    def _load(self, version: str) -> None:
        try:
            manifest = self.store.manifest(self.kind, version)
            path = self.store.fetch(self.kind, version, self.workdir / version)
            model = self.load(path, manifest)
        except Exception as exc:  # noqa: BLE001 - the arm serves the active model meanwhile
            self.failed[version] = (time.monotonic(), f"{type(exc).__name__}: {exc}")
            log.error("pinned %s version %s could not be loaded: %s", self.kind, version, exc)
            return
        if version in self._wanted:
            self.loaded[version] = model
            self.failed.pop(version, None)
            log.info("pinned %s version %s loaded for an experiment", self.kind, version)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)

    def status(self) -> dict[str, Any]:
        return {"loaded": sorted(self.loaded), "wanted": sorted(self._wanted),
                "failed": {v: err for v, (_, err) in self.failed.items()}}


def attach_experiments(pipeline: Pipeline, settings: Settings, pinned: bool = True) -> Callable[[], None]:
    """Routes ``pipeline``'s users into the settings' experiments, reloads them from the settings
    file, and loads pinned ranker versions; returns the function that stops the threads."""
    resolver = PinnedRankers.from_settings(settings) if pinned else None
    experiments = Experiments(settings.experiments, resolver)
    watcher = ExperimentWatcher.from_settings(settings, experiments)
    experiments.watcher, pipeline.experiments = watcher, experiments
    if watcher is not None:
        watcher.start()

    def stop() -> None:
        if watcher is not None:
            watcher.stop()
        if resolver is not None:
            resolver.stop()

    return stop
