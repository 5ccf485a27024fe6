"""Choose the artifact back-end by URL scheme; optional back-ends are imported lazily."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from core.errors import ArtifactError
from services.artifacts.backends import Backend, LocalBackend, MemoryBackend
from services.artifacts.store import VersionedArtifactStore


def _local(url: str) -> Backend:
    parsed = urlparse(url)
    path = parsed.path if parsed.scheme == "file" else url
    return LocalBackend(Path(path))


def _s3(url: str) -> Backend:
    module = importlib.import_module("services.artifacts.s3")
    backend: Backend = module.S3Backend(url)
    return backend


def _memory(url: str) -> Backend:
    return MemoryBackend()


_SCHEMES: dict[str, Any] = {"": _local, "file": _local, "s3": _s3, "memory": _memory}


def open_backend(url: str) -> Backend:
    scheme = urlparse(url).scheme
    factory = _SCHEMES.get(scheme)
    if factory is None:
        raise ArtifactError(f"unsupported artifact url scheme {scheme!r} in {url!r} (use file:// or s3://)")
    backend: Backend = factory(url)
    return backend


def open_store(url: str) -> VersionedArtifactStore:
    """``file:///dir`` (or a bare path), ``s3://bucket/prefix``, or ``memory://`` for tests."""
    return VersionedArtifactStore(open_backend(url))
