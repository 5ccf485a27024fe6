"""Learned item-to-item relations, fitted by the training job and served as candidate sources.

Two sparse relations over the catalogue, fitted on the users' positive sequences:
- ``cf``: collaborative item-item weights over users; a user's score sums the rows of their history.
  EASE (``models.ease``, each target keeping its top-``ease_k`` sources by magnitude) for catalogues
  up to ``ease_max_items`` (it is solved dense), else item-item cosine with each target keeping its
  top-``cf_k`` sources (RecBole's ItemKNN neighbourhood, ``models.baselines.ItemKNN``). ``cf_model``
  forces one (``"ease"`` / ``"itemknn"``); the manifest records which was fitted;
- ``seq``: windowed sequential co-visitation, forward ``1/d`` and backward ``backward/d``, rows
  normalised (``models.baselines.CoVisit``); a user's score sums the rows of their last items with a
  recency decay.
Unlike the worker's real-time co-visitation, these see the whole training window at once (and, in an
evaluation, everything the baselines see); the ranker weighs both.

Artifacts: ``save(dir)`` writes ``relations.npz`` + ``items.json`` + ``manifest.json`` (kind ``i2i``);
``ItemNeighbours.load(dir)`` verifies checksums and raises ``core.errors.ArtifactError`` otherwise.

Example:
    >>> import numpy as np
    >>> nb = ItemNeighbours.fit([np.array([0, 1, 2]), np.array([0, 1])], ["a", "b", "c"])
    >>> nb.score("seq", ["a"], 2)[0][0]
    'b'
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

try:  # scipy's sparse kernels (private module, stable for years): one product row without overhead
    from scipy.sparse import _sparsetools
except ImportError:  # pragma: no cover - another scipy layout: the public path
    _sparsetools = None

from core.errors import ArtifactError
from models.artifacts import new_version, verify, write_manifest
from models.baselines import CoVisit, ItemKNN
from models.ease import EASE

KIND = "i2i"
RELATIONS = ("cf", "seq")
IntArray = npt.NDArray[np.int64]
Scored = list[tuple[str, float]]
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class NeighbourConfig:
    cf_k: int = 100
    cf_shrink: float = 0.0
    cf_model: Literal["auto", "ease", "itemknn"] = "auto"  # "auto": EASE up to ease_max_items, else ItemKNN
    ease_lambda: float = 250.0
    ease_k: int = 200
    ease_max_items: int = 10_000  # dense n x n float32 while solving: 10k items ~ 1.2 GB at the peak
    seq_window: int = 5
    seq_last_n: int = 5
    seq_decay: float = 0.6
    seq_backward: float = 0.3

    def cf_kind(self, n_items: int) -> str:
        """The cf relation fitted for a catalogue of ``n_items``: ``"ease"`` or ``"itemknn"``."""
        if self.cf_model != "auto":
            return self.cf_model
        return "ease" if n_items <= self.ease_max_items else "itemknn"


class UserRow:
    """One user's row of a relation: ``cols`` and ``data`` as the product gives them (``score``'s ties
    follow this order), ``best`` its largest value, and on first use (``by_column``) the columns in
    ascending order with their values over ``best`` (negative values as 0)."""

    __slots__ = ("_by_column", "best", "cols", "data")

    def __init__(self, cols: IntArray, data: npt.NDArray[Any]) -> None:
        self.cols, self.data = cols, data
        self.best = float(data.max()) if len(data) else 0.0
        self._by_column: tuple[IntArray, npt.NDArray[Any]] | None = None

    def by_column(self) -> tuple[IntArray, npt.NDArray[Any]]:
        if self._by_column is None:
            order = np.argsort(self.cols, kind="stable")  # (the product's runs: timsort ~6x quicker)
            self._by_column = self.cols[order], np.maximum(self.data[order], 0.0) / self.best
        return self._by_column


RowMemo = dict[tuple[str, tuple[str, ...]], UserRow | None]


class ItemNeighbours:
    def __init__(self, item_ids: Sequence[str], cf: sp.csr_matrix, seq: sp.csr_matrix,
                 cfg: NeighbourConfig | None = None, version: str | None = None) -> None:
        self.item_ids = list(item_ids)
        self.codes = {iid: j for j, iid in enumerate(self.item_ids)}
        self.cfg = cfg or NeighbourConfig()
        self._cf = ItemKNN(self.cfg.cf_k, self.cfg.cf_shrink)
        self._cf.sim, self._cf.n_items = cf.tocsr(), len(self.item_ids)
        c = self.cfg
        self._seq = CoVisit(c.seq_window, c.seq_last_n, c.seq_decay, c.seq_backward)
        self._seq.matrix, self._seq.n_items = seq.tocsr(), len(self.item_ids)
        self.version = version or new_version()

    @classmethod
    def fit(cls, sequences: Sequence[IntArray], item_ids: Sequence[str],
            cfg: NeighbourConfig | None = None) -> ItemNeighbours:
        """``sequences``: each user's positive items as codes into ``item_ids``, oldest first."""
        c = cfg or NeighbourConfig()
        n = len(item_ids)
        cf = (EASE(c.ease_lambda, c.ease_k) if c.cf_kind(n) == "ease" else ItemKNN(c.cf_k, c.cf_shrink)
              ).fit(sequences, n).sim
        seq = CoVisit(c.seq_window, c.seq_last_n, c.seq_decay, c.seq_backward).fit(sequences, n).matrix
        return cls(item_ids, cf, seq, c)

    def __len__(self) -> int:
        return len(self.item_ids)

    def score(self, relation: str, recent: Sequence[str], k: int, memo: RowMemo | None = None) -> Scored:
        """Top-``k`` (item, score) for a user whose engaged items are ``recent`` (newest first);
        items in ``recent`` are left in (the funnel drops seen items). ``memo``: a dict the caller
        keeps for one request (one model, one user), where the user's row is computed once for
        ``score`` and ``scores`` (``funnel.retrieval.CandidateSet.relation_rows``)."""
        if k <= 0:
            return []
        row = self._user_row(relation, recent, memo)
        if row is None or not len(row.data):
            return []
        top = stable_top(row.data, k)
        data, cols = row.data[top], row.cols[top]
        keep = data > 0
        ids = self.item_ids
        return [(ids[c], v) for c, v in zip(cols[keep].tolist(), data[keep].tolist(), strict=True)]

    def scores(self, relation: str, recent: Sequence[str], item_ids: Sequence[str],
               memo: RowMemo | None = None) -> F32:
        """Each of ``item_ids``' score in the user's row over the row's best score (0 where the row
        does not reach it, or for an unknown item): what ``score`` would give it, normalised as the
        funnel normalises a source's list, for every candidate and not only the top ``k``. Looked up
        in the row's sorted columns (no catalogue-sized array); ``memo`` as for ``score``."""
        out = np.zeros(len(item_ids), np.float32)
        row = self._user_row(relation, recent, memo) if len(item_ids) else None
        if row is None or row.best <= 0:
            return out
        cols, norms = row.by_column()
        rows = np.fromiter(map(self.codes.get, item_ids, itertools.repeat(-1)), np.int64, len(item_ids))
        at = np.minimum(np.searchsorted(cols, rows), len(cols) - 1)
        hit = cols[at] == rows  # (an unknown id, -1, is no column)
        out[hit] = norms[at[hit]]
        return out

    def _user_row(self, relation: str, recent: Sequence[str], memo: RowMemo | None) -> UserRow | None:
        """The user's row of ``relation`` (None without a known item in ``recent``), from ``memo``
        when this request computed it already."""
        if memo is None:
            codes = self._codes(recent)
            return UserRow(*self._row(relation, codes)) if len(codes) else None
        key = (relation, tuple(recent))
        if key not in memo:
            memo[key] = self._user_row(relation, recent, None)
        return memo[key]

    def _codes(self, recent: Sequence[str]) -> IntArray:
        """The known ones of ``recent`` (newest first) as codes, oldest first."""
        return np.array([self.codes[i] for i in reversed(recent) if i in self.codes], np.int64)

    def _row(self, relation: str, codes: IntArray) -> tuple[IntArray, npt.NDArray[Any]]:
        """The user's score row (columns, values) as ``score_sparse`` computes it, without scipy's
        per-call overhead (``_product_row``); scipy itself where the two could differ."""
        query: tuple[IntArray, npt.NDArray[np.float32]] | None
        if relation == "cf":  # binary_matrix: each item once, sorted, 1.0
            unique = np.unique(codes)
            query, matrix = (unique, np.ones(len(unique), np.float32)), self._cf.sim
        else:
            query = _decayed_query(codes[-self._seq.last_n:][::-1], self._seq.decay)
            matrix = self._seq.matrix
        fast = _product_row(matrix, *query) if query is not None else None
        if fast is None:
            row = (self._cf if relation == "cf" else self._seq).score_sparse([codes])
            return row.indices.astype(np.int64), row.data
        return fast

    def save(self, directory: Path) -> dict[str, Any]:
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {**_pack("cf", self._cf.sim), **_pack("seq", self._seq.matrix)}
        with (directory / "relations.npz").open("wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]
        (directory / "items.json").write_text(json.dumps(self.item_ids))
        return write_manifest(directory, KIND, self.version, ["relations.npz", "items.json"],
                              config=asdict(self.cfg), model_version=self.version, item_count=len(self),
                              meta={"cf_model": self.cfg.cf_kind(len(self))})

    @classmethod
    def load(cls, directory: Path) -> ItemNeighbours:
        manifest = verify(directory, KIND)
        try:
            ids = json.loads((directory / "items.json").read_text())
            with np.load(directory / "relations.npz") as z:
                cf, seq = (_unpack(z, name, len(ids)) for name in RELATIONS)
            return cls(ids, cf, seq, NeighbourConfig(**manifest["config"]), str(manifest["version"]))
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise ArtifactError(f"{directory}: unreadable i2i artifact ({exc})") from None


def _decayed_query(last: IntArray, decay: float) -> tuple[IntArray, npt.NDArray[np.float32]] | None:
    """CoVisit's query row: ``decay**position`` per item, repeats summed in position order (what
    scipy's duplicate summing does for rows of up to 16 entries, where its index sort is stable)."""
    if len(last) > 16:
        return None
    vals = (decay ** np.arange(len(last))).astype(np.float32)
    cols, inverse = np.unique(last, return_inverse=True)
    sums = np.zeros(len(cols), np.float32)
    np.add.at(sums, inverse, vals)
    return cols, sums


def _product_row(matrix: sp.csr_matrix, cols: IntArray, vals: npt.NDArray[Any]
                 ) -> tuple[IntArray, npt.NDArray[Any]] | None:
    """One row of ``q @ matrix`` (``q``: sorted unique ``cols`` with ``vals``) by scipy's own
    ``csr_matmat`` kernel, called directly (the same result, without building a query matrix and
    the checks around the product: ~0.15 ms a call). None when the kernel is not available."""
    if _sparsetools is None or vals.dtype != matrix.dtype:
        return None
    idx = np.int64 if max(matrix.nnz, matrix.shape[1]) >= np.iinfo(np.int32).max else np.int32
    q_ptr, q_cols = np.array([0, len(cols)], idx), cols.astype(idx)
    m_ptr, m_cols = matrix.indptr.astype(idx, copy=False), matrix.indices.astype(idx, copy=False)
    nnz = _sparsetools.csr_matmat_maxnnz(1, matrix.shape[1], q_ptr, q_cols, m_ptr, m_cols)
    out_ptr, out_cols, out_vals = np.empty(2, idx), np.empty(nnz, idx), np.empty(nnz, matrix.dtype)
    _sparsetools.csr_matmat(1, matrix.shape[1], q_ptr, q_cols, vals, m_ptr, m_cols, matrix.data,
                            out_ptr, out_cols, out_vals)
    return out_cols[: out_ptr[1]].astype(np.int64), out_vals[: out_ptr[1]]


def stable_top(data: npt.NDArray[Any], k: int) -> npt.NDArray[np.intp]:
    """``np.argsort(-data, kind="stable")[:k]`` without sorting everything: the k-th largest value
    splits the data, ties at it are taken in position order, and only those k are sorted."""
    if len(data) <= k:
        return np.argsort(-data, kind="stable")
    kth = np.partition(-data, k - 1)[k - 1]
    above = np.flatnonzero(-data < kth)
    ties = np.flatnonzero(-data == kth)[: k - len(above)]
    pick = np.sort(np.concatenate([above, ties]))
    return pick[np.argsort(-data[pick], kind="stable")]


def _pack(name: str, m: sp.csr_matrix) -> dict[str, npt.NDArray[Any]]:
    return {f"{name}_data": m.data, f"{name}_indices": m.indices, f"{name}_indptr": m.indptr}


def _unpack(z: Any, name: str, n: int) -> sp.csr_matrix:
    return sp.csr_matrix((z[f"{name}_data"], z[f"{name}_indices"], z[f"{name}_indptr"]), shape=(n, n))
