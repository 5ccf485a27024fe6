"""Hot-swap holder for serving: loads only newer releases, verifies checksums, keeps the last good.

Example:
    >>> loader = Loader(store, "index", lambda d, m: load_index(d), Path("/tmp/cache"))  # doctest: +SKIP
    >>> loader.poll()          # True when a newer version was loaded and swapped in    # doctest: +SKIP
    >>> loader.value           # the object serving uses; the last good one on failure  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Literal, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge

from core.errors import ArtifactError
from services.artifacts.manifest import MANIFEST_NAME, Manifest, Release, parse_version

log = logging.getLogger(__name__)
T = TypeVar("T")
PRUNE_AFTER_S = 300.0  # a version directory is old enough to delete (all sharers moved on)

LOAD_FAILURES = Counter("streamrec_artifact_load_failures", "Artifact loads refused", ["kind"])
LOADED_VERSION = Gauge("streamrec_artifact_loaded_version", "Version currently serving", ["kind"])


def register_loader_metrics(registry: CollectorRegistry) -> None:
    """Expose the process-wide loader metrics on a process's own registry (API, publisher)."""
    for shared in (LOAD_FAILURES, LOADED_VERSION):
        registry.register(shared)


class ReleaseSource(Protocol):
    """What the Loader needs from a store (VersionedArtifactStore satisfies it)."""

    def active(self, kind: str) -> Release | None: ...

    def latest_version(self, kind: str) -> str | None: ...

    def manifest(self, kind: str, version: str) -> Manifest: ...

    def fetch(self, kind: str, version: str, dest: Path) -> Path: ...


@dataclass(frozen=True)
class Loaded(Generic[T]):
    kind: str
    version: str
    seq: int
    manifest: Manifest
    value: T
    loaded_at: float


@dataclass(frozen=True)
class LoadFailure:
    kind: str
    version: str
    seq: int
    error: str
    at: float


LoadFn = Callable[[Path, Manifest], T]
FailureHook = Callable[[LoadFailure], None]


class Loader(Generic[T]):
    """Follows the kind's ACTIVE release (or, before any release / with ``follow="latest"``, the
    newest complete version). ``poll()`` swaps in a newer one atomically; a failed fetch, checksum
    or ``load`` is recorded (``failures``, Prometheus, ``on_failure``) and the old value stays."""

    def __init__(self, store: ReleaseSource, kind: str, load: LoadFn[T], workdir: Path, *,
                 follow: Literal["active", "latest"] = "active",
                 on_failure: FailureHook | None = None, keep: int = 2) -> None:
        self.store, self.kind, self._load, self.follow = store, kind, load, follow
        self.workdir = Path(workdir) / kind
        self.on_failure, self.keep = on_failure, max(keep, 1)
        self.failures: list[LoadFailure] = []
        self._current: Loaded[T] | None = None
        self._failed: set[tuple[int, str]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def current(self) -> Loaded[T] | None:
        return self._current

    @property
    def value(self) -> T | None:
        cur = self._current
        return cur.value if cur else None

    @property
    def version(self) -> str | None:
        cur = self._current
        return cur.version if cur else None

    def _target(self) -> tuple[int, str] | None:
        if self.follow == "active":
            release = self.store.active(self.kind)
            if release is not None:
                return release.seq, release.version
        latest = self.store.latest_version(self.kind)
        return (0, latest) if latest else None

    def _is_newer(self, seq: int, version: str) -> bool:
        """A higher release seq wins (even a rollback to an older version); same seq: higher version."""
        cur = self._current
        if cur is None or seq > cur.seq:
            return True
        return seq == cur.seq and parse_version(version) > parse_version(cur.version)

    def poll(self) -> bool:
        """Load the target release if it is newer than what is held. True when swapped."""
        with self._lock:
            try:
                target = self._target()
            except Exception as exc:  # the store itself is unreachable: keep serving
                log.warning("cannot read %s release: %s", self.kind, exc)
                return False
            if target is None or target in self._failed or not self._is_newer(*target):
                return False
            return self._load_target(*target)

    def _load_target(self, seq: int, version: str) -> bool:
        cur = self._current
        if cur is not None and cur.version == version:  # re-pointed at what we hold
            self._current = Loaded(self.kind, version, seq, cur.manifest, cur.value, cur.loaded_at)
            return False
        try:
            manifest = self.store.manifest(self.kind, version)
            path = self._fetch(version)
            value = self._load(path, manifest)
        except Exception as exc:
            self._record_failure(seq, version, exc)
            return False
        self._current = Loaded(self.kind, version, seq, manifest, value, time.time())
        LOADED_VERSION.labels(self.kind).set(parse_version(version))
        log.info("%s: now serving version %s (release %d)", self.kind, version, seq)
        self._prune(version)
        return True

    def _record_failure(self, seq: int, version: str, exc: Exception) -> None:
        kind_of = "artifact" if isinstance(exc, ArtifactError) else type(exc).__name__
        failure = LoadFailure(self.kind, version, seq, f"{kind_of}: {exc}", time.time())
        self._failed.add((seq, version))
        self.failures.append(failure)
        LOAD_FAILURES.labels(self.kind).inc()
        log.error("%s version %s refused, still serving %s: %s", self.kind, version, self.version, exc)
        if self.on_failure is not None:
            try:
                self.on_failure(failure)
            except Exception:
                log.exception("recording the %s load failure failed", self.kind)

    def _fetch(self, version: str) -> Path:
        """The version's files under ``workdir``, which several processes may share (the API's
        workers): fetched (and checksummed) into a private directory, then renamed into place in one
        step, so a process never sees a half-written version; one already in place is reused (its
        files are verified again by the kind's loader)."""
        dest = self.workdir / version
        if (dest / MANIFEST_NAME).is_file():
            return dest
        tmp = self.workdir / f".{version}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        try:
            self.store.fetch(self.kind, version, tmp)
            os.rename(tmp, dest)
        except OSError:
            if not (dest / MANIFEST_NAME).is_file():  # not another process winning the race
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return dest

    def _prune(self, keep_version: str) -> None:
        """Drop versions beyond the newest ``keep`` that nobody fetched for a while (another process
        sharing the directory may still be loading a recent one; a mapped file outlives its name)."""
        if not self.workdir.is_dir():
            return
        dirs = sorted((p for p in self.workdir.iterdir() if p.is_dir() and p.name.isdigit()),
                      key=lambda p: int(p.name))
        old = [p for p in dirs if p.name != keep_version][: max(len(dirs) - self.keep, 0)]
        for path in old:
            if time.time() - path.stat().st_mtime > PRUNE_AFTER_S:
                shutil.rmtree(path, ignore_errors=True)

    # -- optional background polling -----------------------------------------------------
    def start(self, interval_s: float = 5.0) -> None:
        """Poll in a daemon thread every ``interval_s`` (serving may call ``poll`` itself instead)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True,
                                        name=f"loader-{self.kind}")
        self._thread.start()

    def _run(self, interval_s: float) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(interval_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
