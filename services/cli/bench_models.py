"""``streamrec bench models``: ranker scoring and ANN search latency on synthetic inputs (JSON out).

    streamrec bench models --candidates 500 --items 100000 --json bench_models.json

Measures ``RankerServing.score`` for one request of ``--candidates`` feature dicts (the serving path,
dict -> tensor -> heads), ``score_arrays`` (tensor path only), and ``ItemIndex.search`` for one query
over ``--items`` vectors (exact below 50k items, HNSW above). Percentiles in milliseconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import typer

app = typer.Typer(help="Model inference benchmarks.")


def _timed(fn: Callable[[], object], repeats: int) -> dict[str, float]:
    for _ in range(5):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    arr = np.array(samples)
    return {"p50_ms": float(np.percentile(arr, 50)), "p95_ms": float(np.percentile(arr, 95)),
            "p99_ms": float(np.percentile(arr, 99)), "mean_ms": float(arr.mean())}


def run_models_bench(candidates: int = 500, items: int = 100_000, dim: int = 64, repeats: int = 200,
                     threads: int = 1) -> dict[str, Any]:
    import torch

    from models.index import ItemIndex
    from models.ranker import MultiTaskRanker, RankerConfig
    from models.ranker_serving import RankerServing

    torch.set_num_threads(threads)
    names = tuple(f"f{n}" for n in range(16))
    serving = RankerServing(MultiTaskRanker(RankerConfig(dense_features=names, sparse_features=("genre",))))
    rng = np.random.default_rng(0)
    rows = [{**{n: float(v) for n, v in zip(names, rng.normal(size=16), strict=True)}, "genre": "g"}
            for _ in range(candidates)]
    dense = rng.normal(size=(candidates, 16)).astype(np.float32)
    vecs = rng.normal(size=(items, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index = ItemIndex.build([str(i) for i in range(items)], vecs)
    return {"candidates": candidates, "items": items, "threads": threads, "index_type": index.index_type,
            "ranker_score_dicts": _timed(lambda: serving.score({}, rows), repeats),
            "ranker_score_arrays": _timed(lambda: serving.score_arrays(dense), repeats),
            "ann_search_k300": _timed(lambda: index.search(vecs[:1], 300), repeats)}


@app.command("models")
def bench_models(candidates: int = typer.Option(500, min=1), items: int = typer.Option(100_000, min=1),
                 repeats: int = typer.Option(200, min=1), threads: int = typer.Option(1, min=1),
                 json_out: Path = typer.Option(Path("bench_models.json"), "--json")) -> None:
    """Ranker latency for one request of N candidates, and ANN search latency."""
    result = run_models_bench(candidates, items, repeats=repeats, threads=threads)
    json_out.write_text(json.dumps(result, indent=2))
    typer.echo(json.dumps(result, indent=2))
