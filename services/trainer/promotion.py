"""The promotion gate: publish a candidate, compare it with the active model on the same holdout,
promote only when it is no worse than ``active - margin``; otherwise record why not."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from services.artifacts import VersionedArtifactStore
from services.metadata import MetadataStore

log = logging.getLogger(__name__)


class Saveable(Protocol):
    """A models/ serving wrapper: ``version`` is stamped before ``save`` writes the payload."""

    version: str

    def save(self, directory: Path) -> Any: ...


@dataclass
class Decision:
    kind: str
    version: str
    promoted: bool
    reason: str
    metrics: dict[str, Any]
    baseline: dict[str, Any] = field(default_factory=dict)


def decide(metric: str, candidate: float, baseline: float | None, margin: float) -> tuple[bool, str]:
    """Higher is better. ``margin`` is how much worse than the active a candidate may be."""
    if baseline is None:
        return True, f"no usable active model; {metric}={candidate:.4f}"
    if candidate >= baseline - margin:
        return True, f"{metric} {candidate:.4f} >= active {baseline:.4f} - margin {margin:.4f}"
    return False, f"{metric} {candidate:.4f} < active {baseline:.4f} - margin {margin:.4f}: not promoted"


@dataclass
class GateInput:
    """One candidate to gate: its metrics, the active model's on the same holdout, and the data window."""

    kind: str
    candidate: Saveable
    metric: str
    metrics: dict[str, Any]
    baseline: dict[str, Any] | None
    data_window: tuple[float, float]
    n_train: int = 0
    extra_meta: dict[str, Any] = field(default_factory=dict)


def gate_and_publish(store: VersionedArtifactStore, meta: MetadataStore, gate: GateInput, margin: float,
                     run_id: int | None = None) -> Decision:
    active = meta.active_model(gate.kind)
    parent = active.version if active else None
    version = store.reserve(gate.kind)
    gate.candidate.version = version
    with tempfile.TemporaryDirectory(prefix=f"cand-{gate.kind}-") as tmp:
        gate.candidate.save(Path(tmp))
        store.publish_dir(gate.kind, Path(tmp), {
            "metrics": gate.metrics, "baseline": gate.baseline, "parent": parent,
            "data_start": gate.data_window[0], "data_end": gate.data_window[1], **gate.extra_meta}, version)
    manifest = store.manifest(gate.kind, version)
    meta.add_model(gate.kind, version, metrics=gate.metrics, baseline_metrics=gate.baseline or {},
                   data_start=gate.data_window[0], data_end=gate.data_window[1], n_train=gate.n_train,
                   checksum=manifest.checksum, parent_version=parent, job_run_id=run_id)
    base = None if gate.baseline is None else float(gate.baseline[gate.metric])
    promoted, reason = decide(gate.metric, float(gate.metrics[gate.metric]), base, margin)
    if promoted:
        promote(store, meta, gate.kind, version, reason)
    else:
        meta.reject_model(gate.kind, version, reason)
        log.warning("%s candidate %s rejected: %s", gate.kind, version, reason)
    return Decision(gate.kind, version, promoted, reason, gate.metrics, gate.baseline or {})


def promote(store: VersionedArtifactStore, meta: MetadataStore, kind: str, version: str, reason: str) -> None:
    """Registry first (the audit trail), then the artifact release pointer that serving follows."""
    meta.promote_model(kind, version, reason)
    store.set_active(kind, version, reason)
    log.info("%s %s promoted: %s", kind, version, reason)


def rollback(store: VersionedArtifactStore, meta: MetadataStore, kind: str) -> str:
    """Re-activate the previously active version of ``kind``; returns it. KeyError when there is none."""
    previous = meta.previous_active(kind)
    if previous is None:
        raise KeyError(f"no earlier {kind} version to roll back to")
    current = meta.active_model(kind)
    promote(store, meta, kind, previous.version,
            f"rollback from {current.version if current else 'none'}")
    return previous.version


def load_active(store: VersionedArtifactStore, kind: str, loader: Callable[[Path], Any]) -> Any | None:
    """The active artifact loaded for evaluation; None (logged) when there is none or it is unreadable."""
    version = store.active_version(kind)
    if version is None:
        return None
    try:
        with tempfile.TemporaryDirectory(prefix=f"active-{kind}-") as tmp:
            return loader(store.fetch(kind, version, Path(tmp)))
    except Exception as exc:
        log.error("active %s %s cannot be loaded for comparison: %s", kind, version, exc)
        return None
