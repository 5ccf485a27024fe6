"""The training job of the lifecycle: the archive's window in, the funnel's training job, the gates.

Reads the last ``trainer.window_s`` of events (nothing after ``now``) and the catalog as of ``now``
(content vectors from the worker's encoder), then runs :func:`funnel.training.train`, the same code
``streamrec eval`` scores. Two gates, each against the active model on the same data:
- two-tower: validation NDCG@10 of the users' latest organic positives (left out of its training);
- ranker: NDCG@10 on the label groups after the job's time cut; with no active ranker, the heuristic
  ranking that serves meanwhile is the baseline, so a ranker worse than it is never promoted.
Every step lands in the registry (job runs, model versions, decisions).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from core.settings import Settings
from feature_store.archive import ParquetArchive
from feature_store.online.memory_state import MemoryOnline
from funnel.log import Catalog, EventLog
from funnel.train_ranker import Group, holdout_ndcg
from funnel.train_two_tower import Validation, serving_ndcg
from funnel.training import TrainConfig, Trained, neighbours_ndcg, train
from models.item_neighbours import ItemNeighbours
from models.ranker_serving import RankerServing
from models.two_tower_serving import TwoTowerServing
from services.artifacts import VersionedArtifactStore
from services.metadata import MetadataStore
from services.trainer.data import load_events, training_catalog
from services.trainer.promotion import Decision, GateInput, gate_and_publish, load_active
from services.trainer.two_tower import load_bundle

log = logging.getLogger(__name__)
MIN_TRAIN_EVENTS = 50


@dataclass
class TrainOutcome:
    run_id: int
    decisions: list[Decision] = field(default_factory=list)
    skipped: str = ""

    def decision(self, kind: str) -> Decision | None:
        return next((d for d in self.decisions if d.kind == kind), None)


Window = tuple[float, float]


def two_tower_gate(settings: Settings, store: VersionedArtifactStore, candidate: TwoTowerServing,
                   val: Validation, catalog: Catalog, window: Window, n_events: int) -> GateInput:
    """Candidate and active two-tower, NDCG@10 on the same validation points and catalog."""
    active = load_active(store, "two_tower", load_bundle)
    base = None if active is None else {"ndcg@10": serving_ndcg(active, val, catalog)}
    metrics = {"ndcg@10": serving_ndcg(candidate, val, catalog), "validation_points": len(val)}
    return GateInput("two_tower", candidate, "ndcg@10", metrics, base, window, n_train=n_events,
                     extra_meta={"items": len(catalog.items),
                                 "content": {"use_model": settings.worker.content_model}})


def ranker_gate(store: VersionedArtifactStore, candidate: RankerServing, holdout: list[Group],
                window: tuple[float, float], n_groups: int) -> GateInput:
    """Candidate and active ranker (or, with none active, the heuristic that serves meanwhile) on the
    same held-out label groups."""
    active = load_active(store, "ranker", RankerServing.load)
    base = {"ndcg@10": holdout_ndcg(active, holdout)}  # holdout_ndcg(None, ...) scores the heuristic
    metrics = {"ndcg@10": holdout_ndcg(candidate, holdout), "holdout_groups": len(holdout),
               "baseline": "active" if active is not None else "heuristic"}
    return GateInput("ranker", candidate, "ndcg@10", metrics, base, window, n_train=n_groups)


def i2i_gate(store: VersionedArtifactStore, candidate: ItemNeighbours, val: Validation, catalog: Catalog,
             window: Window, n_events: int) -> GateInput:
    """Candidate and active item-to-item relations, NDCG@10 on the same validation points."""
    active = load_active(store, "i2i", ItemNeighbours.load)
    base = None if active is None else {"ndcg@10": neighbours_ndcg(active, val, catalog)}
    metrics = {"ndcg@10": neighbours_ndcg(candidate, val, catalog), "validation_points": len(val)}
    return GateInput("i2i", candidate, "ndcg@10", metrics, base, window, n_train=n_events,
                     extra_meta={"items": len(catalog.items)})


def _gates(settings: Settings, store: VersionedArtifactStore, trained: Trained, catalog: Catalog,
           window: tuple[float, float], n_events: int) -> list[GateInput]:
    gates = []
    if trained.neighbours is not None and trained.validation is not None:
        gates.append(i2i_gate(store, trained.neighbours, trained.validation, catalog, window, n_events))
    if trained.two_tower is not None and trained.validation is not None:
        gates.append(two_tower_gate(settings, store, trained.two_tower, trained.validation, catalog, window,
                                    n_events))
    if trained.ranker is not None and trained.holdout:
        gates.append(ranker_gate(store, trained.ranker, trained.holdout, window,
                                 int(trained.metrics.get("groups", 0))))
    return gates


def run_training(settings: Settings, meta: MetadataStore, store: VersionedArtifactStore,
                 archive: ParquetArchive, trigger: str = "schedule", now: float | None = None,
                 cfg: TrainConfig | None = None, details: dict[str, object] | None = None) -> TrainOutcome:
    """Train the two-tower and the ranker on the window, each through its gate. ``details`` go into
    the job run's record (the scheduler's event count)."""
    now = time.time() if now is None else now
    cfg = cfg or TrainConfig.from_settings(settings)
    window = (now - settings.trainer.window_s, now)
    with meta.job("train", trigger) as run:
        outcome = TrainOutcome(run.id)
        run.details.update(details or {})
        started = time.monotonic()
        events = EventLog.from_frame(load_events(archive, *window))
        catalog = training_catalog(archive, now, settings.worker.content_model)
        run.details.update(train_events=len(events), items=len(catalog.items), window=list(window),
                           data_seconds=round(time.monotonic() - started, 2))
        if len(events) < MIN_TRAIN_EVENTS or not catalog.items:
            run.outcome = outcome.skipped = "skipped"
            run.details["reason"] = f"not enough data: {len(events)} events, {len(catalog.items)} items"
            return outcome
        trained = train(events, catalog, settings, cfg, lambda: MemoryOnline(settings))
        run.details.update(training=trained.metrics, skipped=trained.skipped)
        for gate in _gates(settings, store, trained, catalog, window, len(events)):
            outcome.decisions.append(gate_and_publish(store, meta, gate, settings.trainer.promotion_margin,
                                                      run.id))
        run.details["decisions"] = {d.kind: {"version": d.version, "promoted": d.promoted,
                                             "reason": d.reason} for d in outcome.decisions}
        if trained.skipped and not outcome.decisions:
            run.outcome = outcome.skipped = "skipped"
            run.details["reason"] = trained.skipped
    return outcome
