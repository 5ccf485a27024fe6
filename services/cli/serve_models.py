"""Real artifacts for ``streamrec bench serve``, so the ranking, feature and ANN code paths are measured.

Before the load, :func:`publish_models` quick-trains (seconds, on the seeded interactions) the funnel's
two-tower model, builds the FAISS index over the whole catalogue from its item tower, and fits a
multi-task ranker over the funnel's feature columns on simulated rows; each is published to
``settings.artifacts_url`` and promoted exactly as ``streamrec models promote`` / the indexer do
(registry row first, then the store's ACTIVE pointer), so the API's hot-swap loaders pick them up.
During the load, :class:`IndexSwaps` promotes a fresh index version (same vectors, new version id)
every ``every_s`` seconds.
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from core.errors import StartupError
from core.events import Interaction, ItemUpsert
from core.settings import Settings
from models.index import ItemIndex
from models.ranker_serving import RankerServing
from models.two_tower_serving import TwoTowerServing
from services.artifacts import VersionedArtifactStore, open_store
from services.metadata import MetadataStore

log = logging.getLogger(__name__)
RECALL_QUERIES = 200
F32 = npt.NDArray[np.float32]


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
def _event_log(events: Sequence[Interaction]) -> Any:
    from funnel.log import EventLog

    return EventLog.build({"event_id": [e.event_id for e in events], "user": [e.user_id for e in events],
                           "item": [e.item_id for e in events], "type": [str(e.type) for e in events],
                           "value": [e.value for e in events], "ts": [e.timestamp for e in events]})


def train_two_tower(events: Sequence[Interaction],
                    items: Sequence[ItemUpsert]) -> tuple[TwoTowerServing, F32]:
    """One short epoch of the funnel's two-tower fit over the seeded clicks, in the shape the training
    job serves (``TwoTowerOptions``' dimensions: the per-request forward pass costs what it will),
    on the content vectors the worker computed (hashing back-end) so unseen items are placed too.
    Returns the model and every item's vector (the index's rows)."""
    from funnel.labels import Labels
    from funnel.log import Catalog
    from funnel.train_two_tower import TwoTowerOptions, fit_two_tower
    from models.content import ContentConfig, ContentEncoder, item_text

    content = ContentEncoder(ContentConfig(use_model=False)).encode(
        [item_text(it.title, it.text) for it in items], [list(it.categories) for it in items])
    catalog = Catalog(list(items), content)
    opts = TwoTowerOptions(epochs=1, batch_size=512, max_seconds=30.0)
    tower, _ = fit_two_tower(_event_log(events), catalog, Labels(np.zeros(0, np.int64), []), opts, seed=0)
    if tower is None:
        raise StartupError("bench serve: too few click sequences to train a two-tower model")
    return tower, tower.item_vectors(catalog.item_ids, content)


def train_ranker(rows: int = 4000, seed: int = 0) -> RankerServing:
    """A ranker over the funnel's feature columns (``funnel.features.FEATURES``), fitted on simulated
    rows where clicks follow the co-visitation, two-tower and popularity scores and the item's CTR, so
    the served feeds go through the learned ranking step with the real feature set, in the shape the
    training job promotes (``TrainConfig.ranker_members`` rankers, logits averaged)."""
    from funnel.features import FEATURES, INDEX
    from funnel.training import TrainConfig
    from models.ranker import RankerConfig
    from models.ranker_train import RankerTrainConfig, RankingData
    from models.ranker_train import train_ranker as fit

    rng = np.random.default_rng(seed)
    dense = rng.random((rows, len(FEATURES)), dtype=np.float32)
    logit = (3 * dense[:, INDEX["covisit_score"]] + 2 * dense[:, INDEX["tt_score"]]
             + dense[:, INDEX["popular_score"]] + 8 * dense[:, INDEX["item_ctr_24h"]] - 6)
    click = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    deep = click * (rng.random(rows) < 0.3)
    data = RankingData(dense[:, None], np.zeros((rows, 1, 0), np.int64),
                       {"click": click[:, None], "deep": deep[:, None].astype(np.float32)},
                       np.ones((rows, 1), bool))
    members = TrainConfig().ranker_members  # the shape the training job promotes (an ensemble)
    model = fit(data, RankerConfig(dense_features=FEATURES, members=members),
                RankerTrainConfig(epochs=2, batch_groups=512, listwise=False, seed=seed))
    return RankerServing(model)


def fit_neighbours(events: Sequence[Interaction], items: Sequence[ItemUpsert]) -> Any:
    """The learned item-to-item relations (``models.item_neighbours``) over the seeded click sequences,
    as the training job fits them: the funnel's ``seq`` and ``cf`` candidate sources."""
    from models.item_neighbours import ItemNeighbours

    codes = {it.item_id: j for j, it in enumerate(items)}
    seqs: dict[str, list[int]] = {}
    for ev in sorted(events, key=lambda e: e.timestamp):
        if ev.item_id in codes:
            seqs.setdefault(ev.user_id, []).append(codes[ev.item_id])
    return ItemNeighbours.fit([np.array(s, np.int64) for s in seqs.values()], list(codes))


def wait_for_models(api: str, user: str, versions: dict[str, str], timeout_s: float = 180.0,
                    in_a_row: int = 8) -> None:
    """Block until ``in_a_row`` feeds in a row, each on a new connection (so on any of the API's
    worker processes), carry the promoted ranker and index versions (the API polls the store)."""
    import httpx

    want = {"model_version": versions["ranker"], "index_version": versions["index"]}
    deadline, got, row = time.monotonic() + timeout_s, {}, 0
    while time.monotonic() < deadline:
        try:
            text = httpx.get(f"{api}/v1/feed/{user}", timeout=10.0).text
        except httpx.HTTPError:  # not listening yet
            text = ""
        got = dict(re.findall(r'"(model_version|index_version)":"([^"]*)"', text))
        row = row + 1 if all(got.get(k) == v for k, v in want.items()) else 0
        if row >= in_a_row:
            return
        time.sleep(0.5 if row == 0 else 0.05)
    raise StartupError(f"the feed API did not load {want} within {timeout_s:.0f}s (serving {got})")


def _recall(index: ItemIndex, ids: Sequence[str], vectors: np.ndarray, queries: np.ndarray) -> float:
    from services.indexer.ann import exact_recall

    return exact_recall(index, ids, vectors, queries, 10)


@dataclass
class Published:
    promoter: Promoter
    index: ItemIndex
    recall: float
    versions: dict[str, str]


def publish_models(settings: Settings, events: Sequence[Interaction],
                   items: Sequence[ItemUpsert]) -> Published:
    """Train, build, publish and promote ``two_tower``, ``index``, ``i2i`` and ``ranker``; returns the
    versions."""
    t0 = time.perf_counter()
    promoter = Promoter(settings)
    tower, vectors = train_two_tower(events, items)
    item_ids = [it.item_id for it in items]
    tower_version = promoter.model("two_tower", tower, {"items": len(item_ids)})
    index = ItemIndex.build(item_ids, vectors, model_version=tower_version)
    rng = np.random.default_rng(0)
    queries = vectors[rng.integers(0, len(vectors), RECALL_QUERIES)]
    recall = _recall(index, item_ids, vectors, queries)
    index_version = promoter.index(index, recall)
    i2i_version = promoter.model("i2i", fit_neighbours(events, items), {"items": len(item_ids)})
    ranker_version = promoter.model("ranker", train_ranker(), {"rows": 4000})
    log.warning("bench serve: artifacts promoted in %.1fs (two_tower %s, index %s %s recall@10 %.3f, "
                "ranker %s)", time.perf_counter() - t0, tower_version, index_version, index.index_type,
                recall, ranker_version)
    return Published(promoter, index, recall,
                     {"two_tower": tower_version, "index": index_version, "i2i": i2i_version,
                      "ranker": ranker_version})


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
