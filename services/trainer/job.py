"""The training job: point-in-time data from the archive, fit, evaluate on a recent time holdout
against the active model, publish, and promote through the gate. Every step lands in the registry."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

import pandas as pd

from core.features import EVENT_TIMESTAMP
from core.settings import Settings
from feature_store.archive import ParquetArchive
from models.ranker_serving import RankerServing
from services.artifacts import VersionedArtifactStore
from services.metadata import MetadataStore
from services.trainer.data import Catalogue, load_catalogue, load_events, time_split
from services.trainer.promotion import Decision, GateInput, gate_and_publish, load_active
from services.trainer.ranker import RankerOptions, fit_ranker, holdout_auc, impression_labels, point_in_time
from services.trainer.two_tower import (
    F32,
    TwoTowerBundle,
    TwoTowerOptions,
    encode_content,
    fit_two_tower,
    holdout_recall,
    load_bundle,
)

log = logging.getLogger(__name__)
MIN_TRAIN_EVENTS = 50


@dataclass
class TrainOutcome:
    run_id: int
    decisions: list[Decision] = field(default_factory=list)
    skipped: str = ""

    def decision(self, kind: str) -> Decision | None:
        return next((d for d in self.decisions if d.kind == kind), None)


def options_from_settings(settings: Settings, base: TwoTowerOptions | None = None) -> TwoTowerOptions:
    t = settings.trainer
    return replace(base or TwoTowerOptions(), epochs=t.epochs, seed=t.seed, max_seconds=t.max_train_seconds)


def ranker_options(settings: Settings) -> RankerOptions:
    return RankerOptions(epochs=max(settings.trainer.epochs, 3), seed=settings.trainer.seed)


@dataclass
class TrainingData:
    train: pd.DataFrame
    holdout: pd.DataFrame
    catalogue: Catalogue
    content: F32
    window: tuple[float, float]


def build_training_data(settings: Settings, archive: ParquetArchive, opts: TwoTowerOptions,
                        now: float) -> TrainingData:
    """Events of the last ``trainer.window_s`` (nothing after ``now``: point in time) + the catalogue
    as of ``now`` (new items included) + content vectors, split by time into train and holdout."""
    start = now - settings.trainer.window_s
    events = load_events(archive, start, now)
    catalogue = load_catalogue(archive, now)
    train, holdout, _cut = time_split(events, settings.trainer.holdout_fraction)
    return TrainingData(train, holdout, catalogue, encode_content(catalogue, opts.content), (start, now))


def two_tower_gate(settings: Settings, store: VersionedArtifactStore, data: TrainingData,
                   candidate: TwoTowerBundle) -> GateInput:
    k = settings.trainer.eval_k
    metrics = holdout_recall(candidate, data.train, data.holdout, data.catalogue, data.content, k)
    active = load_active(store, "two_tower", load_bundle)
    baseline = None if active is None else holdout_recall(active, data.train, data.holdout, data.catalogue,
                                                          data.content, k)
    return GateInput("two_tower", candidate, f"recall@{k}", metrics, baseline, data.window,
                     n_train=len(data.train), extra_meta={"items": len(data.catalogue)})


def ranker_gate(settings: Settings, store: VersionedArtifactStore, archive: ParquetArchive,
                data: TrainingData, opts: RankerOptions) -> GateInput | str:
    """Fit the ranker on point-in-time features of the training impressions; the gate input, or why
    there is nothing to train."""
    events = pd.concat([data.train, data.holdout])
    cut_s = float(data.holdout["timestamp"].min())
    # Sample each side of the cut: the newest max_rows alone can all fall in the holdout.
    n_holdout = max(1, round(opts.max_rows * settings.trainer.holdout_fraction))
    labels = pd.concat([impression_labels(events, opts.max_rows - n_holdout, before=cut_s),
                        impression_labels(events, n_holdout, since=cut_s)], ignore_index=True)
    if len(labels) < MIN_TRAIN_EVENTS or labels["click"].sum() == 0:
        return f"not enough labelled impressions ({len(labels)})"
    rows = point_in_time(settings, archive, labels)
    cut = pd.Timestamp(cut_s, unit="s", tz="UTC")
    train, holdout = rows[rows[EVENT_TIMESTAMP] < cut], rows[rows[EVENT_TIMESTAMP] >= cut]
    if train.empty or holdout.empty:
        return "no impressions on one side of the holdout cut"
    candidate = fit_ranker(train, opts)
    active = load_active(store, "ranker", RankerServing.load)
    baseline = None if active is None else holdout_auc(active, holdout)
    return GateInput("ranker", candidate, "auc.click", holdout_auc(candidate, holdout), baseline, data.window,
                     n_train=len(train))


class _Phases:
    """Wall-clock seconds per phase, stored in the job run's details (``phase_seconds``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t = time.monotonic()

    def mark(self, name: str) -> None:
        now = time.monotonic()
        self.seconds[name] = round(now - self._t, 3)
        self._t = now


def _train_ranker(settings: Settings, meta: MetadataStore, store: VersionedArtifactStore,
                  archive: ParquetArchive, data: TrainingData, opts: RankerOptions, run_id: int,
                  details: dict[str, object]) -> Decision | None:
    ranked = ranker_gate(settings, store, archive, data, opts)
    if isinstance(ranked, str):
        details["ranker"] = ranked
        return None
    return gate_and_publish(store, meta, ranked, settings.trainer.promotion_margin, run_id)


def run_training(settings: Settings, meta: MetadataStore, store: VersionedArtifactStore,
                 archive: ParquetArchive, opts: TwoTowerOptions | None = None, trigger: str = "schedule",
                 now: float | None = None, ranker: RankerOptions | None = None) -> TrainOutcome:
    """Train the two-tower, and the ranker when ``ranker`` options are given, each through the gate."""
    now = time.time() if now is None else now
    opts = opts or options_from_settings(settings)
    with meta.job("train", trigger) as run:
        outcome, phases = TrainOutcome(run.id), _Phases()
        data = build_training_data(settings, archive, opts, now)
        phases.mark("data")
        run.details.update(train_events=len(data.train), holdout_events=len(data.holdout),
                           items=len(data.catalogue), window=list(data.window), phase_seconds=phases.seconds)
        if len(data.train) < MIN_TRAIN_EVENTS or len(data.catalogue) == 0:
            run.outcome = outcome.skipped = "skipped"
            run.details["reason"] = f"not enough data: {len(data.train)} events, {len(data.catalogue)} items"
            return outcome
        candidate = fit_two_tower(data.train, data.catalogue, data.content, opts)
        phases.mark("two_tower_fit")
        run.details["fit_seconds"] = phases.seconds["two_tower_fit"]
        gate = two_tower_gate(settings, store, data, candidate)
        margin = settings.trainer.promotion_margin
        outcome.decisions.append(gate_and_publish(store, meta, gate, margin, run.id))
        phases.mark("two_tower_gate")
        if ranker is not None:
            decision = _train_ranker(settings, meta, store, archive, data, ranker, run.id, run.details)
            outcome.decisions += [decision] if decision else []
            phases.mark("ranker")
        run.details["decisions"] = {d.kind: {"version": d.version, "promoted": d.promoted,
                                             "reason": d.reason} for d in outcome.decisions}
    return outcome
