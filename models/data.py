"""Interaction logs and the temporal leave-one-out split used for training and evaluation.

``Interactions`` holds an event log as dense integer codes (users, items) plus timestamps and weights,
in file order. ``leave_one_out`` orders each user's events by timestamp with a STABLE sort (file order
breaks ties, as RecBole does): last -> test, second-last -> validation, the rest -> train.
Users with fewer than 3 events keep everything in train.

Loaders: ``load_movielens(dir)`` (u.data + u.item: title = text, genres = categories) and
``load_csv(path)`` (``user_id,item_id,timestamp[,weight]``, header optional).

Example:
    >>> log = Interactions.from_arrays(["u", "u", "u"], ["a", "b", "c"], [1.0, 1.0, 2.0])
    >>> split = leave_one_out(log)
    >>> [log.item_ids[i] for i in split.test_item]
    ['c']
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass
class Interactions:
    """An event log in file order. ``users``/``items`` are codes into ``user_ids``/``item_ids``."""

    user_ids: list[str]
    item_ids: list[str]
    users: IntArray
    items: IntArray
    timestamps: FloatArray
    weights: FloatArray
    item_text: list[str] = field(default_factory=list)
    item_categories: list[list[str]] = field(default_factory=list)

    @classmethod
    def from_arrays(cls, users: Sequence[str], items: Sequence[str],
                    timestamps: Sequence[float] | FloatArray,
                    weights: Sequence[float] | FloatArray | None = None) -> Interactions:
        uids, ucodes = np.unique(np.asarray(users, dtype=object).astype(str), return_inverse=True)
        iids, icodes = np.unique(np.asarray(items, dtype=object).astype(str), return_inverse=True)
        w = np.ones(len(users)) if weights is None else np.asarray(weights, dtype=np.float64)
        return cls(list(uids), list(iids), ucodes.astype(np.int64), icodes.astype(np.int64),
                   np.asarray(timestamps, dtype=np.float64), w)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def __len__(self) -> int:
        return len(self.users)

    def attach_items(self, meta: dict[str, tuple[str, list[str]]]) -> None:
        """Item text and categories aligned with ``item_ids`` (missing -> id as text, no categories)."""
        self.item_text = [meta.get(i, (i, []))[0] for i in self.item_ids]
        self.item_categories = [meta.get(i, ("", []))[1] for i in self.item_ids]


@dataclass
class Split:
    """Temporal leave-one-out. ``train_seq[u]`` is u's training items in time order (codes).

    ``valid_item``/``test_item`` are -1 for users too short to hold them out.
    """

    train_seq: list[IntArray]
    train_ts: list[FloatArray]
    valid_item: IntArray
    test_item: IntArray
    valid_ts: FloatArray
    test_ts: FloatArray
    valid_weight: FloatArray
    test_weight: FloatArray
    train_weight: list[FloatArray]

    def train_pairs(self) -> tuple[IntArray, IntArray]:
        """All training (user, item) pairs, users grouped, items in time order."""
        users = np.concatenate([np.full(len(s), u) for u, s in enumerate(self.train_seq)])
        return users.astype(np.int64), np.concatenate(self.train_seq).astype(np.int64)


def user_order(log: Interactions) -> list[IntArray]:
    """Per user, the row indices in (timestamp, file position) order: a stable time sort."""
    order = np.lexsort((np.arange(len(log)), log.timestamps, log.users))
    bounds = np.searchsorted(log.users[order], np.arange(log.n_users + 1))
    return [order[bounds[u]:bounds[u + 1]] for u in range(log.n_users)]


def leave_one_out(log: Interactions) -> Split:
    rows = user_order(log)
    n = log.n_users
    valid, test = np.full(n, -1, np.int64), np.full(n, -1, np.int64)
    vts, tts, vw, tw = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    seqs, tss, ws = [], [], []
    for u, r in enumerate(rows):
        cut = len(r) - 2 if len(r) >= 3 else len(r)
        if cut < len(r):
            valid[u], vts[u], vw[u] = log.items[r[cut]], log.timestamps[r[cut]], log.weights[r[cut]]
            test[u], tts[u], tw[u] = log.items[r[-1]], log.timestamps[r[-1]], log.weights[r[-1]]
        seqs.append(log.items[r[:cut]])
        tss.append(log.timestamps[r[:cut]])
        ws.append(log.weights[r[:cut]])
    return Split(seqs, tss, valid, test, vts, tts, vw, tw, ws)


MOVIELENS_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                    "Romance", "Sci-Fi", "Thriller", "War", "Western"]


def load_movielens(path: Path) -> Interactions:
    """MovieLens-100K: ``u.data`` (tab separated, rating as weight) + ``u.item`` (latin-1)."""
    raw = np.loadtxt(path / "u.data", dtype=np.int64, delimiter="\t")
    log = Interactions.from_arrays([str(x) for x in raw[:, 0]], [str(x) for x in raw[:, 1]],
                                   raw[:, 3].astype(float), raw[:, 2].astype(float))
    log.attach_items(_movielens_items(path / "u.item"))
    return log


def _movielens_items(path: Path) -> dict[str, tuple[str, list[str]]]:
    meta: dict[str, tuple[str, list[str]]] = {}
    if not path.is_file():
        return meta
    for line in path.read_text(encoding="latin-1").splitlines():
        parts = line.split("|")
        if len(parts) < 6:
            continue
        flags = parts[-len(MOVIELENS_GENRES):]
        meta[parts[0]] = (parts[1], [g for g, f in zip(MOVIELENS_GENRES, flags, strict=False) if f == "1"])
    return meta


def load_csv(path: Path) -> Interactions:
    """``user_id,item_id,timestamp[,weight]``; a first row whose timestamp is not a number is a header."""
    users, items, ts, ws = [], [], [], []
    with path.open(newline="") as fh:
        for i, row in enumerate(csv.reader(fh)):
            if not row or (i == 0 and not _is_number(row[2] if len(row) > 2 else "")):
                continue
            if len(row) < 3:
                raise ValueError(f"{path}:{i + 1}: expected user_id,item_id,timestamp[,weight]")
            users.append(row[0])
            items.append(row[1])
            ts.append(float(row[2]))
            ws.append(float(row[3]) if len(row) > 3 and row[3] else 1.0)
    return Interactions.from_arrays(users, items, ts, ws)


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True
