"""The versioned artifact store (implements ``core.protocols.ArtifactStore``) over any Backend.

Layout per kind::

    <kind>/<version>/<file>...        the payload, each file written atomically
    <kind>/<version>/artifact.json    written LAST: a version without it is incomplete and ignored
    <kind>/.locks/<version>           exclusive version allocation
    <kind>/ACTIVE.json                the release pointer (promote / rollback)
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.errors import ArtifactError
from services.artifacts.backends import Backend
from services.artifacts.manifest import (
    ACTIVE_NAME,
    MANIFEST_NAME,
    Manifest,
    Release,
    combined_checksum,
    format_version,
    parse_version,
    sha256_file,
)

log = logging.getLogger(__name__)
_MAX_ALLOC_TRIES = 100


def _check_name(name: str, what: str) -> None:
    if not name or "/" in name or name.startswith(".") or name == MANIFEST_NAME:
        raise ArtifactError(f"invalid artifact {what} {name!r}")


class VersionedArtifactStore:
    """Publish, list, fetch (checksum-verified) and point ``ACTIVE`` at artifact versions."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def __repr__(self) -> str:
        return f"VersionedArtifactStore({self.backend.describe()})"

    # -- writing -------------------------------------------------------------------------
    def reserve(self, kind: str) -> str:
        """Allocate the next version now (e.g. to stamp it inside the payload), publish it later."""
        _check_name(kind, "kind")
        return self._allocate(kind)

    def publish(self, kind: str, files: Mapping[str, Path], meta: Mapping[str, Any],
                version: str | None = None) -> str:
        """Upload ``files`` (name -> local path) as a new version (or the ``reserve``d one); the
        manifest goes last."""
        _check_name(kind, "kind")
        for name in files:
            _check_name(name, "file name")
        version = format_version(parse_version(version)) if version else self._allocate(kind)
        entries: dict[str, dict[str, Any]] = {}
        for name, src in files.items():
            src = Path(src)
            entries[name] = {"sha256": sha256_file(src), "size": src.stat().st_size}
            self.backend.put_file(f"{kind}/{version}/{name}", src)
        manifest = Manifest(kind, version, time.time(), entries, combined_checksum(entries),
                            json.loads(json.dumps(dict(meta), default=str)))
        self.backend.put_bytes(f"{kind}/{version}/{MANIFEST_NAME}", manifest.to_json())
        log.info("published %s version %s (%d files)", kind, version, len(entries))
        return version

    def publish_dir(self, kind: str, directory: Path, meta: Mapping[str, Any],
                    version: str | None = None) -> str:
        """Publish every regular file directly inside ``directory``."""
        files = {p.name: p for p in sorted(Path(directory).iterdir()) if p.is_file()}
        if not files:
            raise ArtifactError(f"nothing to publish in {directory}")
        return self.publish(kind, files, meta, version)

    def _allocate(self, kind: str) -> str:
        taken = [parse_version(v) for v in self.backend.children(f"{kind}/.locks")]
        taken += [parse_version(v) for v in self._version_dirs(kind)]
        n = max(taken, default=0) + 1
        for _ in range(_MAX_ALLOC_TRIES):
            version = format_version(n)
            if self.backend.create_exclusive(f"{kind}/.locks/{version}", str(time.time()).encode()):
                return version
            n += 1
        raise ArtifactError(f"could not allocate a new {kind} version")

    def set_active(self, kind: str, version: str, reason: str = "") -> Release:
        """Point the kind's release at ``version`` (promote or rollback). Returns the new release."""
        version = format_version(parse_version(version))
        self.manifest(kind, version)  # must exist and be complete
        current = self.active(kind)
        release = Release(kind, version, (current.seq if current else 0) + 1, time.time(), reason)
        self.backend.put_bytes(f"{kind}/{ACTIVE_NAME}", release.to_json())
        log.info("%s release %d -> version %s (%s)", kind, release.seq, version, reason or "-")
        return release

    # -- reading -------------------------------------------------------------------------
    def _version_dirs(self, kind: str) -> list[str]:
        return [c for c in self.backend.children(kind) if c.isdigit()]

    def versions(self, kind: str) -> list[str]:
        """Complete versions (manifest present), oldest first."""
        done = [v for v in self._version_dirs(kind) if MANIFEST_NAME in self.backend.children(f"{kind}/{v}")]
        return sorted(done, key=parse_version)

    def latest_version(self, kind: str) -> str | None:
        versions = self.versions(kind)
        return versions[-1] if versions else None

    def active(self, kind: str) -> Release | None:
        try:
            raw = self.backend.get_bytes(f"{kind}/{ACTIVE_NAME}")
        except FileNotFoundError:
            return None
        try:
            return Release.from_json(raw)
        except (ValueError, TypeError) as exc:
            raise ArtifactError(f"{kind} release pointer is unreadable: {exc}") from None

    def active_version(self, kind: str) -> str | None:
        release = self.active(kind)
        return release.version if release else None

    def manifest(self, kind: str, version: str) -> Manifest:
        version = format_version(parse_version(version))
        try:
            raw = self.backend.get_bytes(f"{kind}/{version}/{MANIFEST_NAME}")
        except FileNotFoundError:
            raise ArtifactError(f"{kind} version {version} has no manifest (missing or incomplete)") from None
        try:
            return Manifest.from_json(raw)
        except (ValueError, TypeError) as exc:
            raise ArtifactError(f"{kind} version {version} manifest is corrupt: {exc}") from None

    def fetch(self, kind: str, version: str, dest: Path) -> Path:
        """Download every file of the version into ``dest`` and verify size and sha256.

        Raises ArtifactError when a file is missing, truncated or fails its checksum."""
        manifest = self.manifest(kind, version)
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        for name, entry in manifest.files.items():
            target = dest / name
            try:
                self.backend.get_file(f"{kind}/{manifest.version}/{name}", target)
            except FileNotFoundError:
                raise ArtifactError(f"{kind} {manifest.version}: file {name} is missing") from None
            verify_file(target, entry, f"{kind} {manifest.version}: {name}")
        (dest / MANIFEST_NAME).write_bytes(manifest.to_json())
        return dest


def verify_file(path: Path, entry: Mapping[str, Any], label: str) -> None:
    size = path.stat().st_size
    if size != entry["size"]:
        raise ArtifactError(f"{label} is truncated or resized: {size} bytes, manifest says {entry['size']}")
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise ArtifactError(
            f"{label} fails its checksum: sha256 {digest[:12]}.., manifest {entry['sha256'][:12]}..")
