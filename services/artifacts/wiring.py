"""One-call wiring for processes: the store from settings, and a Loader that records refusals
in the metadata registry (a failed ``load_<kind>`` job run)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TypeVar

from core.settings import Settings
from services.artifacts.loader import FailureHook, Loader, LoadFailure, LoadFn
from services.artifacts.registry import open_store
from services.artifacts.store import VersionedArtifactStore

log = logging.getLogger(__name__)
T = TypeVar("T")


def store_from_settings(settings: Settings) -> VersionedArtifactStore:
    return open_store(settings.artifacts_url)


def metadata_failure_hook(settings: Settings) -> FailureHook:
    """Writes each refused load to the metadata store; the store is opened lazily on first use."""
    from services.metadata import MetadataStore

    holder: list[MetadataStore] = []

    def record(failure: LoadFailure) -> None:
        if not holder:
            holder.append(MetadataStore(settings.database_url))
        holder[0].record_load_failure(failure.kind, failure.version, failure.error)

    return record


def loader_from_settings(settings: Settings, kind: str, load: LoadFn[T], *,
                         record_failures: bool = True, cache_dir: Path | None = None) -> Loader[T]:
    """``Loader`` over ``settings.artifacts_url`` caching under ``data_dir/artifact-cache/shared``: every
    serving process of a host (the API's workers, the publisher) fetches a version once and maps the
    same files."""
    workdir = cache_dir or settings.data_dir / "artifact-cache" / "shared"
    hook = metadata_failure_hook(settings) if record_failures else None
    return Loader(store_from_settings(settings), kind, load, workdir, on_failure=hook)
