"""Minimal FAISS adapter used by the indexer until/unless ``models`` ships its index wrapper:
inner product, exact below ``exact_below`` items and HNSW above, string ids kept beside the index.

Files: ``index.faiss`` and ``ids.json``. Implements ``core.protocols.VectorIndex``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
INDEX_FILE, IDS_FILE = "index.faiss", "ids.json"


class FaissIndex:
    def __init__(self, index: faiss.Index, item_ids: list[str], version: str = "") -> None:
        self.index, self.item_ids, self.version = index, list(item_ids), version

    @classmethod
    def build(cls, item_ids: Sequence[str], vectors: F32, exact_below: int = 50_000,
              hnsw_m: int = 32, ef_search: int = 128) -> FaissIndex:
        dim = int(vectors.shape[1])
        if len(item_ids) < exact_below:
            index: faiss.Index = faiss.IndexFlatIP(dim)
        else:
            hnsw = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efSearch = ef_search
            index = hnsw
        out = cls(index, [])
        out.add(item_ids, vectors)
        return out

    def add(self, item_ids: Sequence[str], vectors: F32) -> None:
        if len(item_ids):
            self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))
            self.item_ids.extend(item_ids)

    def __len__(self) -> int:
        return len(self.item_ids)

    def search(self, queries: F32, k: int) -> tuple[list[list[str]], F32]:
        scores, rows = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        ids = [[self.item_ids[j] for j in row if j >= 0] for row in rows]
        return ids, scores.astype(np.float32)

    def save(self, directory: Path) -> dict[str, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(directory / INDEX_FILE))
        (directory / IDS_FILE).write_text(json.dumps(self.item_ids))
        return {INDEX_FILE: directory / INDEX_FILE, IDS_FILE: directory / IDS_FILE}

    @classmethod
    def load(cls, directory: Path, version: str = "") -> FaissIndex:
        ids = json.loads((directory / IDS_FILE).read_text())
        index = faiss.read_index(str(directory / INDEX_FILE))
        if index.ntotal != len(ids):
            raise ValueError(f"index holds {index.ntotal} vectors but {len(ids)} ids")
        return cls(index, ids, version)


def exact_recall(index: FaissIndex, vectors: F32, queries: F32, k: int) -> float:
    """Mean overlap of the index's top-k with brute-force inner-product top-k."""
    k = min(k, len(index))
    if k == 0 or len(queries) == 0:
        return 1.0
    exact = np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :k]
    got, _ = index.search(queries, k)
    truth = [{index.item_ids[j] for j in row} for row in exact]
    return float(np.mean([len(set(g) & t) / k for g, t in zip(got, truth, strict=True)]))
