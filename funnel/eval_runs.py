"""Several seeds of ``funnel.evaluation.run_once`` and the JSON document of ``streamrec eval``.

Means are over seeds with their standard error across seeds (``metrics_se``); the per-user standard
error is kept too (``metrics_user_se``), and the lead over each baseline is a paired per-user
difference (seeds averaged per user), which is how "ahead by two standard errors" is judged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.online import F32
from core.settings import Settings
from funnel.evaluation import RunResult, run_once
from funnel.training import StoreFactory, TrainConfig
from models.content import ContentConfig, ContentEncoder, item_text
from models.data import (
    Interactions,
    Split,
    global_time_split,
    leave_one_out,
    load_csv,
    load_items_csv,
    load_movielens,
    random_split,
)
from models.metrics import aggregate_seeds, paired_difference, standard_error

log = logging.getLogger(__name__)


def load_data(path: Path, fmt: str, items: Path | None = None) -> Interactions:
    data = load_movielens(path) if fmt == "movielens" else load_csv(path)
    if items is not None:
        data.attach_items(load_items_csv(items))
    return data


def content_vectors(data: Interactions, use_model: bool) -> F32 | None:
    """The worker's encoder over each item's text and categories (None without item metadata)."""
    if not data.item_text:
        return None
    enc = ContentEncoder(ContentConfig(use_model=use_model))
    return enc.encode([item_text(t, "") for t in data.item_text], [list(c) for c in data.item_categories])


def make_split(data: Interactions, name: str, seed: int) -> Split:
    if name == "random":
        return random_split(data, seed)
    if name == "global":
        return global_time_split(data)
    return leave_one_out(data)


@dataclass
class Seeds:
    data: Interactions
    content: F32 | None
    settings: Settings
    cfg: TrainConfig
    new_store: StoreFactory
    runs: list[RunResult] = field(default_factory=list)
    global_runs: list[RunResult] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)

    def add(self, seed: int, split: Split, global_split: Split | None) -> None:
        log.info("eval seed %d: %s", seed, split.protocol)
        self.runs.append(self._run(split, seed))
        if global_split is not None:
            log.info("eval seed %d: global time split", seed)
            self.global_runs.append(self._run(global_split, seed))
        self.seeds.append(seed)

    def _run(self, split: Split, seed: int) -> RunResult:
        r = run_once(self.data, split, self.content, self.settings, self.cfg, self.new_store, seed)
        base = ", ".join(f"{n} {m['ndcg@10']:.4f}" for n, m in r.baselines.items())
        log.info("eval seed %d, %s: ndcg@10 %.4f (%s) in %.0f s", seed, split.protocol,
                 r.metrics["ndcg@10"], base, r.seconds)  # each run's figures as it ends
        return r

    def document(self) -> dict[str, Any]:
        doc = _summary(self.runs)
        seconds = [r.seconds for r in self.runs]
        if self.global_runs:
            doc["global_split"] = _summary(self.global_runs)
            seconds = [a + b.seconds for a, b in zip(seconds, self.global_runs, strict=True)]
        return {**doc, "seeds": self.seeds, "seconds_per_seed": seconds}


def _summary(runs: list[RunResult]) -> dict[str, Any]:
    metrics, metrics_se = aggregate_seeds([r.metrics for r in runs])
    names = list(runs[0].baselines)
    baselines = {n: aggregate_seeds([r.baselines[n] for r in runs]) for n in names}
    ours = np.stack([r.ndcg for r in runs])
    lead = {}
    for n in names:
        diff, se = paired_difference(ours, np.stack([r.baseline_ndcg[n] for r in runs]))
        lead[n] = {"ndcg@10": diff, "se": se, "z": diff / se if se > 0 else 0.0}
    ablations = {k: aggregate_seeds([r.ablations[k] for r in runs if k in r.ablations])[0]
                 for k in runs[0].ablations}
    return {"metrics": metrics, "metrics_se": metrics_se,
            "metrics_user_se": {"ndcg@10": float(np.mean([standard_error(r.ndcg) for r in runs]))},
            "baselines": {n: m for n, (m, _) in baselines.items()},
            "baselines_se": {n: se for n, (_, se) in baselines.items()},
            "lead": lead, "ablations": ablations, "training": [r.training for r in runs],
            "users": int(len(runs[0].ndcg))}
