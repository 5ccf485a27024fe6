"""Versioned model/index artifacts on disk: files + ``manifest.json`` with sizes and SHA-256.

An artifact is a directory::

    manifest.json   {"kind", "format_version", "version", "model_version", "created_at",
                     "item_count", "files": {name: {"sha256", "bytes"}}, "config", "meta"}
    <files>         weights (torch state_dict), FAISS index, id map ...

``write_manifest`` is called last (after every file is written); ``verify`` refuses a missing,
truncated or corrupted artifact with :class:`core.errors.ArtifactError` naming the file and why.
Weights are written with ``torch.save(state_dict)`` and read back with ``weights_only=True`` only
after the checksum matched (``load_state``).

Example:
    >>> import tempfile, torch
    >>> d = Path(tempfile.mkdtemp())
    >>> save_state(d / "weights.pt", {"w": torch.ones(2)})
    >>> _ = write_manifest(d, "demo", "v1", ["weights.pt"])
    >>> load_state(verify(d, "demo"), d, "weights.pt")["w"].tolist()
    [1.0, 1.0]
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from core.errors import ArtifactError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def new_version() -> str:
    """Sortable version string: UTC time to the microsecond."""
    now = time.time()
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now * 1e6) % 1_000_000:06d}"


def write_manifest(directory: Path, kind: str, version: str, files: Sequence[str],
                   config: Mapping[str, Any] | None = None, meta: Mapping[str, Any] | None = None,
                   model_version: str | None = None, item_count: int | None = None) -> dict[str, Any]:
    manifest = {
        "kind": kind, "format_version": FORMAT_VERSION, "version": version,
        "model_version": model_version, "created_at": time.time(), "item_count": item_count,
        "files": {f: {"sha256": sha256_file(directory / f), "bytes": (directory / f).stat().st_size}
                  for f in files},
        "config": dict(config or {}), "meta": dict(meta or {}),
    }
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(tmp, directory / MANIFEST)
    return manifest


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{directory}: no {MANIFEST} (artifact missing or incomplete)")
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: manifest is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise ArtifactError(f"{path}: manifest has no 'files' table")
    return manifest


def verify(directory: Path, kind: str) -> dict[str, Any]:
    """The manifest, after checking kind, format, and every file's size and SHA-256."""
    manifest = read_manifest(directory)
    if manifest.get("kind") != kind:
        raise ArtifactError(f"{directory}: artifact kind {manifest.get('kind')!r}, expected {kind!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{directory}: unsupported format_version {manifest.get('format_version')!r}")
    for name, entry in manifest["files"].items():
        _check_file(directory / name, entry)
    return manifest


def _check_file(path: Path, entry: Mapping[str, Any]) -> None:
    if not path.is_file():
        raise ArtifactError(f"{path}: listed in the manifest but missing")
    size = path.stat().st_size
    if size != entry.get("bytes"):
        expected = entry.get("bytes")
        raise ArtifactError(f"{path}: truncated or resized ({size} bytes, manifest says {expected})")
    if sha256_file(path) != entry.get("sha256"):
        raise ArtifactError(f"{path}: checksum mismatch (corrupted)")


def save_state(path: Path, state: Mapping[str, torch.Tensor]) -> None:
    torch.save({k: v.detach().cpu() for k, v in state.items()}, path)


def load_state(manifest: Mapping[str, Any], directory: Path, name: str,
               mmap: bool = False) -> dict[str, torch.Tensor]:
    """Load a verified state_dict (``verify`` first) with ``weights_only=True``. ``mmap``: the tensors
    are views of the file (copy-on-write pages), shared by every process that maps it."""
    if name not in manifest.get("files", {}):
        raise ArtifactError(f"{directory}: {name} is not listed in the manifest")
    try:
        state = torch.load(directory / name, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # torch raises several types for unreadable pickles
        raise ArtifactError(f"{directory / name}: cannot load weights ({exc})") from None
    if not isinstance(state, dict):
        raise ArtifactError(f"{directory / name}: not a state_dict")
    return state
