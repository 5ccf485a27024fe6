"""``streamrec eval``: offline quality of the retrieval + ranking pipeline against baselines.

    streamrec eval --data ../shared/data/ml-100k --format movielens --json eval.json
    streamrec eval --data events.csv --format csv --json eval.json   # user_id,item_id,timestamp[,weight]

Protocol and pipeline: see ``models.evaluation``. The JSON holds ``metrics`` (our pipeline),
``baselines`` (pop, itemknn, covisit), ``slices``, ``ablations``, ``train_seconds`` and
``total_seconds``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from enum import StrEnum
from pathlib import Path

import typer

app = typer.Typer(help="Offline evaluation.")


class DataFormat(StrEnum):
    movielens = "movielens"
    csv = "csv"


@app.command("eval")
def eval_command(
    data: Path = typer.Option(..., exists=True, help="MovieLens directory or CSV file"),
    format: DataFormat = typer.Option(DataFormat.movielens, "--format", help="movielens | csv"),
    json_out: Path = typer.Option(Path("eval.json"), "--json", help="where to write the results"),
    threads: int = typer.Option(0, min=0, help="torch threads (0 = torch default)"),
    seed: int = typer.Option(0, help="seed for every random choice"),
    no_text_model: bool = typer.Option(False, help="use the hashing text embedding (faster)"),
) -> None:
    """Temporal leave-one-out, full ranking: NDCG@10, HR@10, Recall@50, MRR, coverage, novelty."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    from models.data import load_csv, load_movielens
    from models.evaluation import EvalConfig, run_evaluation

    if threads:
        torch.set_num_threads(threads)
    start = time.monotonic()
    log_ = load_movielens(data) if format is DataFormat.movielens else load_csv(data)
    tt_train = dataclasses.replace(EvalConfig().two_tower_train, seed=seed)
    cfg = EvalConfig(seed=seed, use_content_model=not no_text_model, two_tower_train=tt_train)
    result = run_evaluation(log_, cfg)
    result["total_seconds"] = time.monotonic() - start
    json_out.write_text(json.dumps(result, indent=2, sort_keys=True))
    _summary(result)


def _summary(result: dict) -> None:
    rows = [("ours", result["metrics"])] + list(result["baselines"].items())
    for name, m in rows:
        typer.echo(f"{name:10s} ndcg@10={m['ndcg@10']:.4f} hr@10={m['hr@10']:.4f} "
                   f"recall@50={m['recall@50']:.4f} mrr={m['mrr']:.4f}")
    typer.echo(f"train_seconds={result['train_seconds']:.1f} total_seconds={result['total_seconds']:.1f}")
