"""Versioned artifacts (weights, indexes): a store chosen by URL scheme and a hot-swap ``Loader``.

Example:
    >>> store = open_store("file:///tmp/artifacts")            # doctest: +SKIP
    >>> v = store.publish("ranker", {"model.pt": path}, {"metrics": {"auc": 0.7}})  # doctest: +SKIP
    >>> store.set_active("ranker", v)                           # doctest: +SKIP
    >>> loader = Loader(store, "ranker", load_fn, workdir)      # doctest: +SKIP
    >>> loader.poll(); loader.current                           # doctest: +SKIP
"""

from services.artifacts.backends import Backend, LocalBackend, MemoryBackend
from services.artifacts.loader import Loaded, Loader, LoadFailure
from services.artifacts.manifest import Manifest, Release, parse_version, sha256_file
from services.artifacts.registry import open_store
from services.artifacts.store import VersionedArtifactStore

__all__ = [
    "Backend",
    "LoadFailure",
    "Loaded",
    "Loader",
    "LocalBackend",
    "Manifest",
    "MemoryBackend",
    "Release",
    "VersionedArtifactStore",
    "open_store",
    "parse_version",
    "sha256_file",
]
