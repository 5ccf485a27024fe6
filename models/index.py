"""FAISS inner-product index over item vectors with string ids (implements core.protocols.VectorIndex).

The index type follows the catalogue size: exact ``IndexFlatIP`` below ``exact_threshold`` items
(default 50k), ``IndexHNSWFlat`` (inner product) above. ``add`` appends new items without a rebuild;
re-adding a known id replaces its vector (the old slot is tombstoned and filtered out of results).

Artifacts: ``save(dir)`` writes ``index.faiss`` + ``ids.json`` + ``manifest.json`` (kind ``index``,
version, model_version, item_count, checksums); ``ItemIndex.load(dir)`` verifies the checksums and
raises :class:`core.errors.ArtifactError` for a missing, truncated or corrupted artifact.

Example:
    >>> import numpy as np
    >>> idx = ItemIndex.build(["a", "b"], np.eye(2, dtype=np.float32), model_version="m1")
    >>> idx.search(np.array([[0.0, 1.0]], dtype=np.float32), 1)[0]
    [['b']]
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from core.errors import ArtifactError
from models.artifacts import new_version, verify, write_manifest

F32 = npt.NDArray[np.float32]
KIND = "index"
EXACT_THRESHOLD = 50_000


def _make_index(dim: int, n_items: int, exact_threshold: int, hnsw_m: int = 32) -> Any:
    if n_items < exact_threshold:
        return faiss.IndexFlatIP(dim)
    index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 80
    index.hnsw.efSearch = 128
    return index


class ItemIndex:
    """Inner-product ANN over item vectors. ``version`` identifies the artifact."""

    def __init__(self, index: Any, ids: list[str | None], version: str, model_version: str) -> None:
        self._index = index
        self._ids = ids
        self._pos = {i: p for p, i in enumerate(ids) if i is not None}
        self.version = version
        self.model_version = model_version
        self._matrix: F32 | None = None

    @classmethod
    def build(cls, item_ids: Sequence[str], vectors: F32, model_version: str = "",
              exact_threshold: int = EXACT_THRESHOLD, version: str | None = None) -> ItemIndex:
        vecs = _as_matrix(vectors)
        index = _make_index(vecs.shape[1], len(item_ids), exact_threshold)
        out = cls(index, [], version or new_version(), model_version)
        out.add(item_ids, vecs)
        return out

    @property
    def dim(self) -> int:
        return int(self._index.d)

    @property
    def index_type(self) -> str:
        return type(self._index).__name__

    def __len__(self) -> int:
        return len(self._pos)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._pos

    def add(self, item_ids: Sequence[str], vectors: F32) -> None:
        """Append items (no rebuild). A known id gets its new vector; the old slot is dropped."""
        vecs = _as_matrix(vectors)
        if len(item_ids) != len(vecs):
            raise ValueError(f"{len(item_ids)} ids but {len(vecs)} vectors")
        if len(set(item_ids)) != len(item_ids):
            raise ValueError("duplicate ids in one add() call")
        if vecs.shape[1] != self.dim:
            raise ValueError(f"vectors have dim {vecs.shape[1]}, index has {self.dim}")
        for item_id in item_ids:
            if item_id in self._pos:
                self._ids[self._pos[item_id]] = None
        start = len(self._ids)
        self._matrix = None
        self._index.add(vecs)
        self._ids.extend(item_ids)
        self._pos.update({i: start + n for n, i in enumerate(item_ids)})

    def matrix(self) -> F32:
        """Every stored vector, by slot: a view of the index's own storage when it keeps raw float32
        vectors (flat and HNSW-flat: no copy, so a memory-mapped index stays shared), else a copy."""
        if self._matrix is None:
            self._matrix = _storage_view(self._index)
            if self._matrix is None:
                self._matrix = self._index.reconstruct_n(0, self._index.ntotal).astype(np.float32)
        return self._matrix

    def vectors(self, item_ids: Sequence[str]) -> tuple[F32, npt.NDArray[np.bool_]]:
        """Stored vectors of ``item_ids`` (zeros where unknown) and which ids were found."""
        if self._matrix is None:
            self.matrix()
        assert self._matrix is not None
        rows = np.fromiter(map(self._pos.get, item_ids, itertools.repeat(-1)), np.int64, len(item_ids))
        found = rows >= 0
        out = np.zeros((len(rows), self.dim), np.float32)
        out[found] = self._matrix[rows[found]]
        return out, found

    def search(self, queries: F32, k: int) -> tuple[list[list[str]], F32]:
        """Top-k ids per query (lists may be shorter than k) and scores ``[Q, k]`` (-inf padded)."""
        q = _as_matrix(queries)
        stale = len(self._ids) - len(self._pos)
        fetch = min(k + stale, len(self._ids))
        out_ids: list[list[str]] = []
        out_scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        if fetch == 0 or k <= 0:
            return [[] for _ in range(len(q))], out_scores
        scores, pos = self._index.search(q, fetch)
        for row in range(len(q)):
            keep = [(self._ids[p], s) for p, s in zip(pos[row], scores[row], strict=True)
                    if p >= 0 and self._ids[p] is not None][:k]
            out_ids.append([str(i) for i, _ in keep])
            out_scores[row, :len(keep)] = [s for _, s in keep]
        return out_ids, out_scores

    def save(self, directory: Path) -> dict[str, Any]:
        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self._index, str(directory / "index.faiss"))
        (directory / "ids.json").write_text(json.dumps(self._ids))
        return write_manifest(directory, KIND, self.version, ["index.faiss", "ids.json"],
                              config={"dim": self.dim, "index_type": self.index_type},
                              model_version=self.model_version, item_count=len(self))

    @classmethod
    def load(cls, directory: Path, mmap: bool = False) -> ItemIndex:
        """``mmap``: the vectors stay in the (page-cached, shared) file instead of a copy per process."""
        manifest = verify(directory, KIND)
        try:
            index = faiss.read_index(str(directory / "index.faiss"), faiss.IO_FLAG_MMAP_IFC if mmap else 0)
            ids = json.loads((directory / "ids.json").read_text())
        except Exception as exc:  # faiss raises RuntimeError, json ValueError
            raise ArtifactError(f"{directory}: unreadable index artifact ({exc})") from None
        if not isinstance(ids, list) or index.ntotal != len(ids):
            raise ArtifactError(f"{directory}: id map does not match the index ({index.ntotal} vectors)")
        return cls(index, ids, str(manifest["version"]), str(manifest.get("model_version") or ""))


def _storage_view(index: Any) -> F32 | None:
    """The raw vectors of a flat (or HNSW-flat) index as a zero-copy [n, d] view, else None."""
    storage = faiss.downcast_index(index.storage) if hasattr(index, "storage") else index
    if not isinstance(storage, faiss.IndexFlat) or storage.ntotal == 0:
        return None
    n, d = storage.ntotal, storage.d
    view: F32 = faiss.rev_swig_ptr(storage.get_xb(), n * d).reshape(n, d)
    return view


def _as_matrix(vectors: F32) -> F32:
    vecs = np.ascontiguousarray(vectors, dtype=np.float32)
    if vecs.ndim != 2:
        raise ValueError(f"expected a [n, d] matrix, got shape {vecs.shape}")
    return vecs
