"""The training job: one code path for ``streamrec train``, the scheduler and ``streamrec eval``.

Given an event log and a catalog (``funnel.log``):
1. pick the label points (``funnel.labels``): served feeds and the last organic positives per user;
2. fit the two-tower on every other positive (``funnel.train_two_tower``) and index its item vectors;
3. replay the log into the in-process store and, at each label point, compute candidates and the
   funnel's features as a request at that moment would (``funnel.train_ranker``);
4. fit the multi-task ranker on the groups before a time cut, report holdout NDCG@10 of the ranker and
   of the heuristic ranking on the groups after it (the promotion gate reads these), then refit on all;
5. refit the item-to-item relations on every positive, the label events included (``refit_neighbours``):
   the ranker learnt from relations that had not seen its labels, as stacking must, and serving uses
   relations that know each user's latest transitions, the most telling ones for what comes next.

The processes wire the archive and the artifact store around it (``services.trainer``); ``streamrec
eval`` wires a dataset (``funnel.evaluation``). The store comes from a factory, so this package needs
only the ``core.online`` Protocols.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from core.settings import Settings
from funnel.labels import NO_LABELS, Labels, Selection, select_labels
from funnel.log import Catalog, EventLog
from funnel.modelset import ModelSet, TwoTowerQuery
from funnel.replay import Store
from funnel.train_ranker import Group, GroupCollector, Groups, fit_ranker, holdout_ndcg
from funnel.train_two_tower import (
    TwoTowerOptions,
    Validation,
    fit_two_tower,
    serving_ndcg,
    training_sequences,
    validation_points,
)
from models.index import ItemIndex
from models.item_neighbours import ItemNeighbours, NeighbourConfig
from models.ranker_serving import RankerServing
from models.ranker_train import RankerTrainConfig
from models.two_tower_serving import TwoTowerServing

log = logging.getLogger(__name__)
StoreFactory = Callable[[], Store]


@dataclass(frozen=True)
class TrainConfig:
    last_n: int = 3
    selection: Selection = "last"
    max_groups: int = 20_000
    max_negatives: int = 200
    holdout_fraction: float = 0.1
    min_groups: int = 30
    gate: bool = True  # fit once more before the time cut to measure the holdout (promotion gate)
    refit_neighbours: bool = True  # serve i2i relations refitted on every positive, label events included
    two_tower: TwoTowerOptions = TwoTowerOptions()
    neighbours: NeighbourConfig = NeighbourConfig()
    ranker: RankerTrainConfig = RankerTrainConfig(epochs=30, batch_groups=32, listwise=True)
    ranker_members: int = 3  # rankers fitted with their own seeds, logits averaged (models.ranker)
    seed: int = 0

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> TrainConfig:
        t = settings.trainer
        tt = replace(TwoTowerOptions(), max_seconds=t.max_train_seconds)
        base = cls(holdout_fraction=t.holdout_fraction, two_tower=tt, seed=t.seed,
                   ranker=replace(cls.ranker, seed=t.seed))
        return replace(base, **overrides)

    def seeded(self, seed: int) -> TrainConfig:
        return replace(self, seed=seed, ranker=replace(self.ranker, seed=seed))


@dataclass
class Trained:
    two_tower: TwoTowerServing | None = None
    index: ItemIndex | None = None
    neighbours: ItemNeighbours | None = None
    ranker: RankerServing | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    holdout: list[Group] = field(default_factory=list)
    validation: Validation | None = None
    skipped: str = ""

    def models(self) -> ModelSet:
        tower = TwoTowerQuery(self.two_tower) if self.two_tower is not None else None
        return ModelSet(ranker=self.ranker, index=self.index, user_tower=tower, neighbours=self.neighbours)


class _Clock:
    def __init__(self) -> None:
        self.t = time.monotonic()
        self.seconds: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.seconds[name] = round(now - self.t, 2)
        self.t = now


def validation(log_: EventLog, catalog: Catalog, cfg: TrainConfig) -> Validation:
    """The two-tower's validation points as the job picks them (for gating any artifact on them)."""
    labels = select_labels(log_, cfg.last_n, cfg.selection, cfg.max_groups, cfg.seed)
    return validation_points(log_, catalog, labels, cfg.seed)


def neighbours_ndcg(nb: ItemNeighbours, val: Validation, catalog: Catalog) -> float:
    """NDCG@10 of the validation points ranked by the two relations together (each scaled to its
    best item), the history excluded: the promotion gate of an ``i2i`` artifact."""
    ids = catalog.item_ids
    gains = []
    for hist, target in zip(val.histories, val.targets, strict=True):
        recent = [ids[c] for c in hist[::-1][:50]]
        acc: dict[str, float] = {}
        for relation in ("seq", "cf"):
            rows = nb.score(relation, recent, 200)
            top = rows[0][1] if rows else 1.0
            for item, s in rows:
                acc[item] = acc.get(item, 0.0) + s / top
        ranked = [i for i, _ in sorted(acc.items(), key=lambda kv: -kv[1]) if i not in set(recent)][:10]
        gains.append(1.0 / np.log2(ranked.index(ids[target]) + 2) if ids[target] in ranked else 0.0)
    return float(np.mean(gains)) if gains else 0.0


def build_index(two_tower: TwoTowerServing, catalog: Catalog) -> ItemIndex:
    """Every catalog item, placed by the item tower (content alone for items it never saw)."""
    vectors = two_tower.item_vectors(catalog.item_ids, catalog.vectors)
    return ItemIndex.build(catalog.item_ids, vectors, model_version=two_tower.version)


def train(log_: EventLog, catalog: Catalog, settings: Settings, cfg: TrainConfig,
          new_store: StoreFactory) -> Trained:
    clock, out = _Clock(), Trained()
    labels = select_labels(log_, cfg.last_n, cfg.selection, cfg.max_groups, cfg.seed)
    out.metrics.update(events=len(log_), items=len(catalog.items), label_points=len(labels),
                       feed_groups=len(labels.feeds))
    if len(labels) < cfg.min_groups:
        out.skipped = f"not enough label points ({len(labels)} < {cfg.min_groups})"
        return out
    out.two_tower, out.validation = fit_two_tower(log_, catalog, labels, cfg.two_tower, cfg.seed)
    if out.two_tower is not None:
        out.metrics["two_tower_validation_ndcg@10"] = serving_ndcg(out.two_tower, out.validation, catalog)
        out.index = build_index(out.two_tower, catalog)
    clock.lap("two_tower")
    out.neighbours = ItemNeighbours.fit(training_sequences(log_, catalog, labels), catalog.item_ids,
                                        cfg.neighbours)
    if out.validation is not None:
        out.metrics["i2i_validation_ndcg@10"] = neighbours_ndcg(out.neighbours, out.validation, catalog)
    clock.lap("i2i")
    groups = _groups(log_, catalog, settings, cfg, new_store, labels, out.models())
    clock.lap("groups")
    out.metrics.update(groups=len(groups.groups), candidate_recall=groups.candidate_recall)
    if len(groups.groups) < cfg.min_groups:
        out.skipped = f"not enough label groups with a labelled candidate ({len(groups.groups)})"
        return out
    _fit(out, groups, settings, cfg)
    clock.lap("ranker")
    if cfg.refit_neighbours:
        out.neighbours = ItemNeighbours.fit(training_sequences(log_, catalog, NO_LABELS), catalog.item_ids,
                                            cfg.neighbours)
        clock.lap("i2i_refit")
    out.metrics["phase_seconds"] = clock.seconds
    return out


def _groups(log_: EventLog, catalog: Catalog, settings: Settings, cfg: TrainConfig, new_store: StoreFactory,
            labels: Labels, models: ModelSet) -> Groups:
    collector = GroupCollector(settings, log_, catalog, new_store(), models, cfg.max_negatives, cfg.seed)
    return collector.collect_held_out(labels) if cfg.selection == "random" else collector.collect(labels)


def _fit(out: Trained, groups: Groups, settings: Settings, cfg: TrainConfig) -> None:
    """Fit before the time cut, measure after it (``cfg.gate``: the trainer's promotion gate reads it;
    ``streamrec eval`` scores the served feeds instead); then the served ranker is fitted on every group."""
    weights = dict(settings.ranking.head_weights)
    order = np.argsort([g.ts for g in groups.groups], kind="stable")
    cut = int(len(order) * (1.0 - cfg.holdout_fraction))
    fit_idx, hold_idx = order[:cut], order[cut:]
    out.holdout = [groups.groups[int(i)] for i in hold_idx]
    if cfg.gate and len(hold_idx) and len(fit_idx):
        first = fit_ranker(groups, fit_idx.astype(np.int64), cfg.ranker, weights, cfg.ranker_members)
        out.metrics["holdout_ndcg@10"] = holdout_ndcg(first, out.holdout)
        out.metrics["holdout_ndcg@10_heuristic"] = holdout_ndcg(None, out.holdout)
        out.metrics["holdout_groups"] = len(out.holdout)
    out.ranker = fit_ranker(groups, None, cfg.ranker, weights, cfg.ranker_members)
