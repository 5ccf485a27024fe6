"""``streamrec eval``: offline quality of the funnel that serves, trained by the job that trains it.

    streamrec eval --data ../shared/data/ml-100k --format movielens --seeds 3 --json eval.json
    streamrec eval --data ../shared/data/ml-100k --split random --json eval-random.json
    streamrec eval --data events.csv --format csv --items items.csv --json eval.json

Protocol: ``funnel.evaluation`` (the training job, then each test user's served feed at their test
time over a replay of the log). Settings come from the usual place (``--config``, env): the funnel
is scored as it is configured to serve. The JSON:
- ``metrics`` / ``metrics_se``: our means over seeds and their standard error across seeds;
  ``metrics_user_se``: the per-user standard error (mean over seeds);
- ``baselines.<name>`` / ``baselines_se.<name>``: Pop, ItemKNN (RecBole's neighbourhood) and
  co-visitation, fitted on the same train + validation interactions;
- ``lead.<name>``: the per-user paired NDCG@10 difference to each baseline and its standard error;
- ``global_split.metrics``, ``global_split.baselines.<name>``: the strict global time split;
- ``ablations.<source>``: each candidate source alone, the ranker without re-ranking, the heuristic;
- ``seconds_per_seed``: the wall seconds of all runs (both splits) over the number of seeds; with
  ``--jobs 2`` (the default on a multi-core host) two runs go at once, each in its own process;
  ``run_seconds``: each run's own wall seconds; ``training``: the job's figures;
- ``holdout``: ``test``, or ``validation`` (``--holdout validation``: every split one step earlier,
  ``models.data.validation_holdout``; settings are chosen on it, the test figures are read once).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(help="Offline evaluation.")
EVAL_FIT_SECONDS = 3600.0
AUTO_JOBS_MAX_INTERACTIONS = 500_000
log = logging.getLogger(__name__)


class DataFormat(StrEnum):
    movielens = "movielens"
    csv = "csv"


class Holdout(StrEnum):
    test = "test"
    validation = "validation"


class SplitName(StrEnum):
    leave_one_out = "leave_one_out"
    random = "random"


@app.command("eval")
def eval_command(
    data: Path = typer.Option(..., exists=True, help="MovieLens directory or CSV file"),
    format: DataFormat = typer.Option(DataFormat.movielens, "--format", help="movielens | csv"),
    items: Path | None = typer.Option(None, exists=True, help="CSV items file (item_id,title,categories)"),
    split: SplitName = typer.Option(SplitName.leave_one_out, "--split", help="leave_one_out | random"),
    seed: int = typer.Option(0, help="first seed; every random choice is seeded"),
    seeds: int = typer.Option(1, min=1, help="run this many seeds (seed, seed+1, ...): mean and SE"),
    global_split: bool = typer.Option(True, help="also run the strict global time split"),
    holdout: Holdout = typer.Option(Holdout.test, "--holdout",
                                    help="test | validation: score the validation events instead, one "
                                    "step earlier (for choosing settings without reading the test figures)"),
    json_out: Path = typer.Option(Path("eval.json"), "--json", help="where to write the results"),
    config: Path | None = typer.Option(None, "--config", "-c", help="settings TOML"),
    threads: int = typer.Option(0, min=0, help="torch threads (0 = torch default)"),
    jobs: int = typer.Option(0, min=0, help="runs at once, each in its own process with one torch thread "
                             "(0 = auto: one per core, up to 2, for logs up to 500k interactions; else 1)"),
) -> None:
    """Train with the training job, serve each test user at their test time, score against baselines."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    from core.settings import load_settings

    if threads:
        torch.set_num_threads(threads)
    settings = load_settings(config)
    started = time.monotonic()
    result = run(settings, data, format, items, split, list(range(seed, seed + seeds)), global_split,
                 jobs, holdout)
    result["total_seconds"] = time.monotonic() - started
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(result, indent=2, sort_keys=True))
    _summary(result)


def run(settings: Any, data: Path, fmt: DataFormat, items: Path | None, split: SplitName,
        seeds: list[int], with_global: bool, jobs: int = 1,
        holdout: Holdout = Holdout.test) -> dict[str, Any]:
    from feature_store.online.memory_state import MemoryOnline
    from funnel.eval_runs import Seeds, content_vectors, load_data, make_split
    from funnel.training import TrainConfig
    from models.data import Split, validation_holdout

    dataset = load_data(data, fmt.value, items)
    content = content_vectors(dataset, settings.worker.content_model)
    # no promotion gate to feed: the served ranker is fitted once, on every group, as after a passed gate
    cfg = TrainConfig.from_settings(settings, selection="random" if split is SplitName.random else "last",
                                    gate=False)
    # Epochs and early stopping decide how long the two-tower trains, not the wall clock: a time cap
    # would make the figures depend on the machine's load.
    cfg = replace(cfg, two_tower=replace(cfg.two_tower, max_seconds=EVAL_FIT_SECONDS))
    store: Callable[[], MemoryOnline] = partial(MemoryOnline, settings)  # picklable: runs go to processes
    runs = Seeds(dataset, content, settings, cfg, store)

    def held(s: Split) -> Split:
        return validation_holdout(s) if holdout is Holdout.validation else s

    for s in seeds:
        strict = held(make_split(dataset, "global", s)) if with_global else None
        runs.add(s, held(make_split(dataset, split.value, s)), strict)
    runs.run(jobs or auto_jobs(len(dataset)))
    return {**runs.document(), "split": split.value, "holdout": holdout.value, "dataset": str(data),
            "protocol": _protocol(dataset, split.value), "machine": machine()}


def machine() -> dict[str, Any]:
    """What the figures were computed on. Seeded training repeats to the last digit on one machine, not
    across machines: torch picks its kernels by the CPU's instruction set (``torch_cpu_capability``),
    and a floating-point difference can change when the two-tower's early stopping fires."""
    import platform

    import numpy
    import torch

    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "numpy": numpy.__version__,
            "python": platform.python_version()}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        return ""


def auto_jobs(interactions: int) -> int:
    """Two runs side by side on a multi-core host, while two copies of a run's memory stay small (a
    1M-interaction run peaks near 3 GB on its own, against a 4 GiB budget for the whole eval)."""
    return max(1, min(2, os.cpu_count() or 1)) if interactions <= AUTO_JOBS_MAX_INTERACTIONS else 1


def _protocol(dataset: Any, split: str) -> dict[str, Any]:
    return {"split": split, "interactions": len(dataset), "users": dataset.n_users, "items": dataset.n_items,
            "served": "the feed the API serves at each test user's test time (50 items, re-ranking and "
                      "exploration included), over a point-in-time replay of the training events",
            "baselines_fit_on": "train + validation"}


def _summary(result: dict[str, Any]) -> None:
    rows = [("ours", result["metrics"])] + list(result["baselines"].items())
    for name, m in rows:
        typer.echo(f"{name:10s} ndcg@10={m['ndcg@10']:.4f} hr@10={m['hr@10']:.4f} "
                   f"recall@50={m['recall@50']:.4f} mrr={m['mrr']:.4f}")
    for name, lead in result.get("lead", {}).items():
        typer.echo(f"lead over {name}: {lead['ndcg@10']:+.4f} (paired SE {lead['se']:.4f})")
    typer.echo(f"seconds_per_seed={[round(s) for s in result['seconds_per_seed']]} "
               f"total_seconds={result['total_seconds']:.0f}")
