"""The index job: embed the current catalogue (new items included) with the ACTIVE item tower, build
the FAISS index, gate it on recall vs exact search, publish it and point the ``index`` release at it
(the API and publisher hot-swap through ``services.artifacts.Loader``)."""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.settings import Settings
from feature_store.archive import ParquetArchive
from models.index import ItemIndex
from services.artifacts import VersionedArtifactStore
from services.indexer.ann import F32, exact_recall
from services.metadata import MetadataStore
from services.trainer.data import Catalogue, load_catalogue, load_events
from services.trainer.two_tower import (
    TwoTowerBundle,
    content_config,
    encode_content,
    load_bundle,
    user_sequences,
)

log = logging.getLogger(__name__)
RECALL_K = 10
INDEX_KIND = "index"


@dataclass
class IndexOutcome:
    run_id: int
    version: str | None = None
    published: bool = False
    recall: float = 0.0
    item_count: int = 0
    reason: str = ""


def _queries(bundle: TwoTowerBundle, archive: ParquetArchive, vectors: F32, n: int, seed: int,
             now: float, window_s: float) -> F32:
    """Real user vectors from recent histories when there are enough, else perturbed item vectors."""
    rng = np.random.default_rng(seed)
    histories = list(user_sequences(load_events(archive, now - window_s, now)).values())
    if len(histories) >= n // 2:
        pick = rng.choice(len(histories), size=min(n, len(histories)), replace=False)
        return bundle.user_vectors([histories[int(i)] for i in pick])
    rows = vectors[rng.integers(0, len(vectors), n)] + 0.1 * rng.standard_normal((n, vectors.shape[1]))
    return rows.astype(np.float32)


def _publish(store: VersionedArtifactStore, index: ItemIndex, meta_fields: dict[str, object]) -> str:
    with tempfile.TemporaryDirectory(prefix="index-") as tmp:
        index.save(Path(tmp))
        return store.publish_dir(INDEX_KIND, Path(tmp), meta_fields, index.version)


def _record(store: VersionedArtifactStore, meta: MetadataStore, out: IndexOutcome, model_version: str,
            sample: int, gate: float) -> None:
    assert out.version is not None
    checksum = store.manifest(INDEX_KIND, out.version).checksum
    meta.add_index(out.version, model_version=model_version, item_count=out.item_count, recall=out.recall,
                   recall_sample=sample, checksum=checksum, job_run_id=out.run_id, status="candidate")
    if out.recall >= gate:
        out.published, out.reason = True, f"recall@{RECALL_K} {out.recall:.4f} >= gate {gate:.2f}"
        meta.activate_index(out.version, out.reason)
        store.set_active(INDEX_KIND, out.version, out.reason)
    else:
        out.reason = f"recall@{RECALL_K} {out.recall:.4f} < gate {gate:.2f}: not published"
        meta.reject_index(out.version, out.reason)
        log.error("index %s rejected: %s", out.version, out.reason)


def _build(settings: Settings, store: VersionedArtifactStore, archive: ParquetArchive, bundle: TwoTowerBundle,
           catalogue: Catalogue, model_version: str, now: float) -> tuple[ItemIndex, float, int]:
    """Embed the catalogue with the item tower (content for items the model never saw), build the
    index, and measure its recall against exact search on a query sample."""
    t = settings.trainer
    vectors = bundle.item_vectors(catalogue.item_ids, encode_content(catalogue, content_config(bundle)))
    index = ItemIndex.build(catalogue.item_ids, vectors, model_version=model_version,
                            version=store.reserve(INDEX_KIND))
    queries = _queries(bundle, archive, vectors, t.index_recall_sample, t.seed, now, settings.drift.window_s)
    return index, exact_recall(index, catalogue.item_ids, vectors, queries, RECALL_K), len(queries)


def run_index(settings: Settings, meta: MetadataStore, store: VersionedArtifactStore, archive: ParquetArchive,
              trigger: str = "schedule", now: float | None = None) -> IndexOutcome:
    now = time.time() if now is None else now
    with meta.job("index", trigger) as run:
        out = IndexOutcome(run.id)
        model_version = store.active_version("two_tower")
        catalogue = load_catalogue(archive, now)
        if model_version is None or len(catalogue) == 0:
            run.outcome = "skipped"
            why = "no active two_tower model" if model_version is None else "empty catalogue"
            out.reason = run.details["reason"] = why
            return out
        with tempfile.TemporaryDirectory(prefix="index-model-") as tmp:
            bundle = load_bundle(store.fetch("two_tower", model_version, Path(tmp)))
        index, out.recall, sample = _build(settings, store, archive, bundle, catalogue, model_version, now)
        out.item_count = len(catalogue)
        out.version = _publish(store, index, {"model_version": model_version, "item_count": out.item_count,
                                              "recall": out.recall, "dim": index.dim})
        _record(store, meta, out, model_version, sample, settings.trainer.index_recall_gate)
        run.details.update(version=out.version, recall=out.recall, items=out.item_count,
                           published=out.published, model_version=model_version)
    return out
