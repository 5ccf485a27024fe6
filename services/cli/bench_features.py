"""``streamrec bench features --json PATH``: 1 user + 500 candidate items, fast reader vs Feast SDK.

Seeds a throwaway Feast project (synthetic stream -> transforms -> pushes; archive -> offline ->
materialize) on ``redis.url`` (or a spawned redis-server), measures, then tears the project down.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import typer
from feast import FeatureStore

from core import features as names
from core.settings import Settings, load_settings
from feature_store import transforms as tf
from feature_store.archive import ParquetArchive
from feature_store.reader import FastFeatureReader
from feature_store.repository import apply, materialize, teardown
from feature_store.synthetic import StreamApplier, make_stream
from feature_store.writer import FeatureWriter
from services.localstack import start_redis

app = typer.Typer()


def _percentiles(fn: Callable[[], Any], n: int) -> tuple[float, float]:
    fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def _seed(settings: Settings, store: FeatureStore, n_items: int) -> list[str]:
    stream = make_stream(n_users=20, n_items=n_items, n_events=10 * n_items, end_ts=time.time() - 1)
    writer = FeatureWriter.from_settings(settings, store)
    applier = StreamApplier(writer, ParquetArchive.from_settings(settings),
                            tf.TransformParams.from_settings(settings))
    applier.upserts(stream.items, stream.users)
    for k in range(0, len(stream.interactions), 1000):
        applier.batch(stream.interactions[k:k + 1000])
    materialize(settings, store)
    return [it.item_id for it in stream.items]


def _sdk_refs(store: FeatureStore, join_key: str) -> list[str]:
    fs = store.get_feature_service(names.RANKING_SERVICE)
    views = {v.view for v in names.ALL_VIEWS if v.join_key == join_key}
    return [f"{p.name}:{f.name}" for p in fs.feature_view_projections if p.name in views for f in p.features]


def run_features_bench(settings: Settings, n_items: int = 500, iterations: int = 300) -> dict[str, Any]:
    store = apply(settings)
    try:
        items = _seed(settings, store, n_items)
        reader = FastFeatureReader.from_settings(settings, store)
        fast = _percentiles(lambda: (reader.user_features("u0"), reader.item_features(items)), iterations)
        urefs, irefs = _sdk_refs(store, names.USER_KEY), _sdk_refs(store, names.ITEM_KEY)
        rows = [{names.ITEM_KEY: i} for i in items]

        def sdk() -> None:
            store.get_online_features(features=urefs, entity_rows=[{names.USER_KEY: "u0"}]).to_dict()
            store.get_online_features(features=irefs, entity_rows=rows).to_dict()

        slow = _percentiles(sdk, max(20, iterations // 10))
    finally:
        teardown(store)
    return {"items": n_items, "iterations": iterations, "fast_reader_ms_p50": fast[0],
            "fast_reader_ms_p99": fast[1], "feast_sdk_ms_p50": slow[0], "feast_sdk_ms_p99": slow[1]}


@app.command()
def features(
    json_path: Path = typer.Option(..., "--json", help="where to write the JSON result"),
    items: int = typer.Option(500, min=1), iterations: int = typer.Option(300, min=10),
    config: Path | None = typer.Option(None, "--config", "-c"),
) -> None:
    """1 user + N items: p50/p99 of the fast reader and of Feast's get_online_features."""
    base = load_settings(config)
    with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp:
        child = None
        url = base.redis.url
        if url is None:
            url, child = start_redis(Path(tmp) / "redis", Path(tmp) / "logs")
        project = f"bench_{uuid.uuid4().hex[:8]}"
        settings = base.model_copy(update={
            "data_dir": Path(tmp), "redis": base.redis.model_copy(update={"url": url}),
            "feast": base.feast.model_copy(update={"project": project, "registry_url": None})})
        try:
            result = run_features_bench(settings, items, iterations)
        finally:
            if child is not None:
                child.stop()
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    typer.echo(json.dumps(result, indent=2))
