"""The manifest written last for every artifact version, and the active-release pointer."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_NAME = "artifact.json"  # not "manifest.json": models/ writes its own inside the payload
ACTIVE_NAME = "ACTIVE.json"
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def combined_checksum(files: dict[str, dict[str, Any]]) -> str:
    """One checksum for a whole version: sha256 over the sorted (name, file sha256) pairs."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}\0{files[name]['sha256']}\n".encode())
    return digest.hexdigest()


def format_version(n: int) -> str:
    return f"{n:06d}"


def parse_version(version: str) -> int:
    """Versions are increasing integers, zero-padded so they also sort as text ("3" == "000003")."""
    try:
        return int(version.lstrip("v"))
    except ValueError:
        raise ValueError(f"artifact version {version!r} is not an integer") from None


@dataclass(frozen=True)
class Manifest:
    """Describes one complete version: per-file sha256 + size, a combined checksum, and free meta
    (metrics, training window, parent model version...)."""

    kind: str
    version: str
    created_at: float
    files: dict[str, dict[str, Any]]
    checksum: str
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, indent=1).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        data = json.loads(raw)
        return cls(**data)


@dataclass(frozen=True)
class Release:
    """The active pointer of a kind. ``seq`` grows on every promote or rollback, so consumers can
    tell a newer release even when it points to an older version (a rollback)."""

    kind: str
    version: str
    seq: int
    updated_at: float
    reason: str = ""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Release:
        return cls(**json.loads(raw))
