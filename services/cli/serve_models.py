"""Real artifacts for ``streamrec bench serve``, so the ranking, feature and ANN code paths are measured.

Before the load, :func:`publish_models` quick-trains (seconds, on the seeded interactions) a two-tower
model, builds the FAISS index over the whole catalogue from its item tower, and fits a multi-task
ranker on simulator-style rows; each is published to ``settings.artifacts_url`` and promoted exactly as
``streamrec models promote`` / the indexer do (registry row first, then the store's ACTIVE pointer),
so the API's hot-swap loaders pick them up. During the load, :class:`IndexSwaps` promotes a fresh
index version (same vectors, new version id) every ``every_s`` seconds.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from core.events import Interaction
from core.settings import Settings
from models.index import ItemIndex
from models.ranker_serving import RankerServing
from models.two_tower_serving import TwoTowerServing
from services.artifacts import VersionedArtifactStore, open_store
from services.metadata import MetadataStore

log = logging.getLogger(__name__)
RECALL_QUERIES = 200


class _Saveable(Protocol):
    version: str

    def save(self, directory: Path) -> Any: ...


class Promoter:
    """Publish + register + promote, through the same APIs as the lifecycle CLI and indexer."""

    def __init__(self, settings: Settings) -> None:
        self.store: VersionedArtifactStore = open_store(settings.artifacts_url)
        self.meta = MetadataStore(settings.database_url)

    def _publish(self, kind: str, obj: _Saveable, meta: dict[str, Any]) -> str:
        version = self.store.reserve(kind)
        obj.version = version  # stamped before save: the payload's manifest carries the store version
        with tempfile.TemporaryDirectory(prefix=f"bench-{kind}-") as tmp:
            obj.save(Path(tmp))
            self.store.publish_dir(kind, Path(tmp), meta, version)
        return version

    def model(self, kind: str, obj: _Saveable, metrics: dict[str, Any]) -> str:
        from services.trainer.promotion import promote

        version = self._publish(kind, obj, {"metrics": metrics, "source": "bench serve"})
        checksum = self.store.manifest(kind, version).checksum
        self.meta.add_model(kind, version, metrics=metrics, checksum=checksum)
        promote(self.store, self.meta, kind, version, "bench serve")
        return version

    def index(self, index: ItemIndex, recall: float) -> str:
        version = self._publish("index", index, {"model_version": index.model_version,
                                                 "item_count": len(index), "recall": recall})
        checksum = self.store.manifest("index", version).checksum
        self.meta.add_index(version, model_version=index.model_version, item_count=len(index),
                            recall=recall, recall_sample=RECALL_QUERIES, checksum=checksum)
        self.meta.activate_index(version, "bench serve")
        self.store.set_active("index", version, "bench serve")
        return version


# ---- quick training ----------------------------------------------------------------------------
def _catalogue(item_ids: Sequence[str], categories: Sequence[list[str]]) -> Any:
    from services.trainer.data import Catalogue

    return Catalogue(list(item_ids), [f"item {i}" for i in item_ids], [list(c) for c in categories],
                     [0.0] * len(item_ids), [True] * len(item_ids))


def _events_frame(events: Sequence[Interaction]) -> pd.DataFrame:
    return pd.DataFrame({"event_id": [e.event_id for e in events], "user_id": [e.user_id for e in events],
                         "item_id": [e.item_id for e in events], "timestamp": [e.timestamp for e in events],
                         "positive": True})


def train_two_tower(events: Sequence[Interaction], item_ids: Sequence[str],
                    categories: Sequence[list[str]]) -> tuple[TwoTowerServing, np.ndarray]:
    """One short epoch over the seeded clicks; hashed content vectors so unseen items are placed too."""
    from services.trainer.two_tower import TwoTowerOptions, encode_content, fit_two_tower

    opts = TwoTowerOptions(dim=32, max_len=20, n_layers=1, epochs=1, batch_size=512, max_seconds=20.0,
                           content={"use_model": False})
    cat = _catalogue(item_ids, categories)
    content = encode_content(cat, opts.content)
    bundle = fit_two_tower(_events_frame(events), cat, content, opts)
    return bundle, bundle.item_vectors(cat.item_ids, content)


def train_ranker(rows: int = 4000, seed: int = 0) -> RankerServing:
    """Simulator-style rows over the ranking feature names: clicks follow CTR and recency."""
    from services.trainer.ranker import DENSE, RankerOptions, fit_ranker

    rng = np.random.default_rng(seed)
    df = pd.DataFrame({f: rng.gamma(2.0, 5.0, rows).astype(np.float32) for f in DENSE})
    df["ctr_1h"] = rng.beta(2, 20, rows)
    df["ctr_24h"] = rng.beta(2, 20, rows)
    df["segment"] = rng.choice(["mobile", "desktop"], rows)
    p = 1 / (1 + np.exp(-(8 * df["ctr_1h"] - 0.02 * df["item_age_s"] - 1)))
    df["click"] = (rng.random(rows) < p).astype(np.float32)
    df["deep"] = df["click"] * (rng.random(rows) < 0.3)
    return fit_ranker(df, RankerOptions(epochs=2, batch_rows=512, seed=seed))


def _recall(index: ItemIndex, ids: Sequence[str], vectors: np.ndarray, queries: np.ndarray) -> float:
    from services.indexer.ann import exact_recall

    return exact_recall(index, ids, vectors, queries, 10)


@dataclass
class Published:
    promoter: Promoter
    index: ItemIndex
    recall: float
    versions: dict[str, str]


def publish_models(settings: Settings, events: Sequence[Interaction], item_ids: Sequence[str],
                   categories: Sequence[list[str]]) -> Published:
    """Train, build, publish and promote ``two_tower``, ``index`` and ``ranker``; returns the versions."""
    t0 = time.perf_counter()
    promoter = Promoter(settings)
    tower, vectors = train_two_tower(events, item_ids, categories)
    tower_version = promoter.model("two_tower", tower, {"items": len(item_ids)})
    index = ItemIndex.build(list(item_ids), vectors, model_version=tower_version)
    rng = np.random.default_rng(0)
    queries = vectors[rng.integers(0, len(vectors), RECALL_QUERIES)]
    recall = _recall(index, item_ids, vectors, queries)
    index_version = promoter.index(index, recall)
    ranker_version = promoter.model("ranker", train_ranker(), {"rows": 4000})
    log.warning("bench serve: artifacts promoted in %.1fs (two_tower %s, index %s %s recall@10 %.3f, "
                "ranker %s)", time.perf_counter() - t0, tower_version, index_version, index.index_type,
                recall, ranker_version)
    return Published(promoter, index, recall,
                     {"two_tower": tower_version, "index": index_version, "ranker": ranker_version})


class IndexSwaps:
    """Promotes a fresh index version every ``every_s`` seconds until stopped (0 = never)."""

    def __init__(self, published: Published, every_s: float) -> None:
        self.published, self.every_s = published, every_s
        self.swaps = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="index-swaps", daemon=True)

    def start(self) -> IndexSwaps:
        if self.every_s > 0:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                version = self.published.promoter.index(self.published.index, self.published.recall)
            except Exception:  # noqa: BLE001 - a failed publish is reported, the load goes on
                log.exception("index swap failed")
                self.failures += 1
                continue
            self.swaps += 1
            log.info("index %s promoted under load", version)
