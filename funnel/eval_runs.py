"""Several seeds of ``funnel.evaluation.run_once`` and the JSON document of ``streamrec eval``.

Means are over seeds with their standard error across seeds (``metrics_se``); the per-user standard
error is kept too (``metrics_user_se``), and the lead over each baseline is a paired per-user
difference (seeds averaged per user), which is how "ahead by two standard errors" is judged.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
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


@dataclass(frozen=True)
class _Task:
    seed: int
    split: Split
    strict: bool  # the strict global time split (else the protocol asked for)


@dataclass
class Seeds:
    """The runs of every seed (the protocol asked for, and the strict global split), run in ``jobs``
    processes at once: each run is independent (its own replay state, models and baselines), and one
    run's serving and baselines use one core, so two runs side by side use a 2-core machine's second
    core. Each run process trains torch on one thread."""

    data: Interactions
    content: F32 | None
    settings: Settings
    cfg: TrainConfig
    new_store: StoreFactory
    runs: list[RunResult] = field(default_factory=list)
    global_runs: list[RunResult] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    tasks: list[_Task] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, seed: int, split: Split, global_split: Split | None) -> None:
        self.tasks.append(_Task(seed, split, False))
        if global_split is not None:
            self.tasks.append(_Task(seed, global_split, True))
        self.seeds.append(seed)

    def run(self, jobs: int = 1) -> None:
        """Run every task, in ``jobs`` spawned processes when more than one."""
        started = time.monotonic()
        args = [(self.data, t.split, self.content, self.settings, self.cfg, self.new_store, t.seed)
                for t in self.tasks]
        done: dict[int, RunResult] = {}
        if jobs <= 1 or len(self.tasks) <= 1:
            for k, a in enumerate(args):
                done[k] = self._log(self.tasks[k], run_once(*a))
        else:
            ctx = multiprocessing.get_context("spawn")  # fork after torch's thread pools is unsafe
            with ProcessPoolExecutor(min(jobs, len(args)), mp_context=ctx, initializer=_child_init) as pool:
                futures = {pool.submit(run_once, *args[k]): k for k in self._longest_first()}
                for f in as_completed(futures):
                    done[futures[f]] = self._log(self.tasks[futures[f]], f.result())
        self.seconds = time.monotonic() - started
        self.runs = [done[k] for k, t in enumerate(self.tasks) if not t.strict]
        self.global_runs = [done[k] for k, t in enumerate(self.tasks) if t.strict]

    def _longest_first(self) -> list[int]:
        """Task indices, the runs of the protocol asked for before the global split's (whose log ends
        at the cut: shorter to train and replay). The pool starts them in this order, so the short runs
        fill the tail, where one process would otherwise run on while the other idles. The results
        do not depend on the order: each run is seeded and has its own state."""
        return sorted(range(len(self.tasks)), key=lambda k: self.tasks[k].strict)

    @staticmethod
    def _log(t: _Task, r: RunResult) -> RunResult:
        base = ", ".join(f"{n} {m['ndcg@10']:.4f}" for n, m in r.baselines.items())
        log.info("eval seed %d, %s: ndcg@10 %.4f (%s) in %.0f s", t.seed,
                 "global time split" if t.strict else t.split.protocol, r.metrics["ndcg@10"], base, r.seconds)
        return r

    def document(self) -> dict[str, Any]:
        doc = _summary(self.runs)
        if self.global_runs:
            doc["global_split"] = _summary(self.global_runs)
        # Wall seconds per seed: the runs' wall time shared over the seeds (with jobs > 1 the runs of
        # a seed, and of different seeds, overlap); each run's own wall seconds are in ``run_seconds``.
        per_seed = [self.seconds / len(self.seeds)] * len(self.seeds)
        names = [f"{t.seed}/{'global' if t.strict else t.split.protocol}" for t in self.tasks]
        runs = iter(self.runs), iter(self.global_runs)
        run_seconds = {n: next(runs[t.strict]).seconds for n, t in zip(names, self.tasks, strict=True)}
        return {**doc, "seeds": self.seeds, "seconds_per_seed": per_seed, "run_seconds": run_seconds}


def _child_init() -> None:
    """A run process: torch on one thread (two runs share two cores), logging as in the parent."""
    import torch

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")


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
