"""Interaction logs and the three evaluation splits used for training and evaluation.

``Interactions`` holds an event log as dense integer codes (users, items) plus timestamps and weights,
in file order. Every split returns a ``Split``: per user code, the training events (items, timestamps,
weights, in time order), the validation item/time/weight and the test item/time/weight (``-1`` items
for users not evaluated). ``Split.eval_users()`` lists the evaluated users, ``Split.history(u)``
gives train + validation in time order (what a model may see when the test item is ranked) and
``Split.fit_sequences()`` gives that for every user (what baselines fit on). Each user's events are
ordered by timestamp with a STABLE sort (file order breaks ties, as RecBole does).

Protocols:

- ``leave_one_out(log)``: per user, last event -> test, second-last -> validation, the rest -> train.
  Users with fewer than 3 events keep everything in train and are not evaluated. Other users' later
  events are in train, so features may see the future of the test time.
- ``global_time_split(log, quantile=0.9)``: a cut time ``T`` = that quantile of all timestamps. Every
  event before ``T`` is training data; a user is evaluated when they have an event before ``T`` and a
  positive event (weight >= ``min_positive_weight``, default: every event) at or after it: test =
  their FIRST such positive, validation = their LAST event before ``T`` (removed from ``train_seq``,
  so train + validation = every event before ``T``; ``train_seq`` may be empty). Events at or after
  ``T`` never reach train, validation or any history: nothing from the future leaks.
- ``random_split(log, seed)``: per user with at least 3 events, one uniformly random event (seeded)
  -> test, another -> validation, every other event -> train. Not temporal: the history of a test
  item includes the user's later events, and its time is only the held-out event's timestamp.

``validation_holdout(split)`` moves any of them one step earlier (validation -> test, the last training
event -> validation): settings are chosen on it, and the test figures read once.

Loaders: ``load_movielens(dir)`` (u.data + u.item: title = text, genres = categories),
``load_csv(path)`` (``user_id,item_id,timestamp[,weight]``, header optional) and
``load_items_csv(path)`` (``item_id,title,categories`` with a header, categories ``|``-separated) for
``Interactions.attach_items``.

Example:
    >>> log = Interactions.from_arrays(["u", "u", "u"], ["a", "b", "c"], [1.0, 1.0, 2.0])
    >>> split = leave_one_out(log)
    >>> [log.item_ids[i] for i in split.test_item]
    ['c']
    >>> [log.item_ids[i] for i in split.history(0)[0]]
    ['a', 'b']
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
G = TypeVar("G", bound=np.generic)


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
        return cls(uids.tolist(), iids.tolist(), ucodes.astype(np.int64), icodes.astype(np.int64),
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
    """One evaluation split (see the module docstring for the protocols). Indexed by user code:
    ``train_seq[u]`` / ``train_ts[u]`` / ``train_weight[u]`` are u's training events in time order;
    ``valid_*[u]`` and ``test_*[u]`` the held-out events (items ``-1`` when u has none).
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
    protocol: str = "leave_one_out"
    cut_time: float | None = None

    def eval_users(self) -> IntArray:
        """User codes with a test event, ascending."""
        return np.flatnonzero(self.test_item >= 0).astype(np.int64)

    def history(self, u: int, validation: bool = True) -> tuple[IntArray, FloatArray, FloatArray]:
        """u's (items, timestamps, weights) in time order: train, plus the validation event when
        ``validation`` and u has one. What may be seen when u's test item is ranked."""
        items, ts, w = self.train_seq[u], self.train_ts[u], self.train_weight[u]
        if not validation or self.valid_item[u] < 0:
            return items, ts, w
        at = int(np.searchsorted(ts, self.valid_ts[u], "right"))
        return (np.insert(items, at, self.valid_item[u]), np.insert(ts, at, self.valid_ts[u]),
                np.insert(w, at, self.valid_weight[u]))

    def fit_sequences(self, validation: bool = True) -> list[IntArray]:
        """Every user's training items (plus validation when asked), in time order: what baselines
        and models fit on."""
        if not validation:
            return list(self.train_seq)
        return [s if v < 0 else np.insert(s, int(np.searchsorted(t, vt, "right")), v)
                for s, t, v, vt in zip(self.train_seq, self.train_ts, self.valid_item, self.valid_ts,
                                       strict=True)]

    def train_pairs(self) -> tuple[IntArray, IntArray]:
        """All training (user, item) pairs, users grouped, items in time order."""
        users = np.concatenate([np.full(len(s), u) for u, s in enumerate(self.train_seq)])
        return users.astype(np.int64), np.concatenate(self.train_seq).astype(np.int64)


def validation_holdout(split: Split) -> Split:
    """The split one step earlier, for choosing settings without reading the test figures: each
    user's validation event is held out as the test event (the test events leave the data), and
    their last training event becomes the validation event. Users without a validation event are
    not evaluated."""
    has = (split.valid_item >= 0) & np.array([len(s) > 0 for s in split.train_seq], bool)
    last = [len(s) - 1 if ok else len(s) for s, ok in zip(split.train_seq, has, strict=True)]

    def _tail(col: list[npt.NDArray[G]], fill: float) -> npt.NDArray[G]:
        return np.array([c[-1] if ok else fill for c, ok in zip(col, has, strict=True)])

    return Split([s[:k] for s, k in zip(split.train_seq, last, strict=True)],
                 [t[:k] for t, k in zip(split.train_ts, last, strict=True)],
                 _tail(split.train_seq, -1).astype(np.int64), np.where(has, split.valid_item, -1),
                 _tail(split.train_ts, 0.0).astype(np.float64), np.where(has, split.valid_ts, 0.0),
                 _tail(split.train_weight, 0.0).astype(np.float64), np.where(has, split.valid_weight, 0.0),
                 [w[:k] for w, k in zip(split.train_weight, last, strict=True)], split.protocol,
                 split.cut_time)


def user_order(log: Interactions) -> list[IntArray]:
    """Per user, the row indices in (timestamp, file position) order: a stable time sort."""
    order = np.lexsort((np.arange(len(log)), log.timestamps, log.users))
    bounds = np.searchsorted(log.users[order], np.arange(log.n_users + 1))
    return [order[bounds[u]:bounds[u + 1]] for u in range(log.n_users)]


def _held(rows: IntArray, col: npt.NDArray[G], fill: float) -> npt.NDArray[G]:
    """``col[rows]`` where ``rows >= 0``, ``fill`` elsewhere, in ``col``'s dtype."""
    out = np.full(len(rows), fill, col.dtype)
    out[rows >= 0] = col[rows[rows >= 0]]
    return out


def _assemble(log: Interactions, train: list[IntArray], valid_row: IntArray, test_row: IntArray,
              protocol: str, cut_time: float | None = None) -> Split:
    """A ``Split`` from row indices: ``train[u]`` in time order, one validation/test row per user or
    -1."""
    return Split([log.items[r] for r in train], [log.timestamps[r] for r in train],
                 _held(valid_row, log.items, -1), _held(test_row, log.items, -1),
                 _held(valid_row, log.timestamps, 0.0), _held(test_row, log.timestamps, 0.0),
                 _held(valid_row, log.weights, 0.0), _held(test_row, log.weights, 0.0),
                 [log.weights[r] for r in train], protocol, cut_time)


def leave_one_out(log: Interactions) -> Split:
    rows = user_order(log)
    long = np.array([len(r) >= 3 for r in rows], bool)
    valid = np.array([r[-2] if ok else -1 for r, ok in zip(rows, long, strict=True)], np.int64)
    test = np.array([r[-1] if ok else -1 for r, ok in zip(rows, long, strict=True)], np.int64)
    train = [r[:-2] if ok else r for r, ok in zip(rows, long, strict=True)]
    return _assemble(log, train, valid, test, "leave_one_out")


def global_time_split(log: Interactions, quantile: float = 0.9,
                      min_positive_weight: float | None = None) -> Split:
    """Strict global time split at ``quantile`` of all timestamps (see the module docstring)."""
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"global split quantile must be in (0, 1), got {quantile}")
    cut = float(np.quantile(log.timestamps, quantile)) if len(log) else 0.0
    positive = np.ones(len(log), bool) if min_positive_weight is None else log.weights >= min_positive_weight
    train, valid, test = [], np.full(log.n_users, -1, np.int64), np.full(log.n_users, -1, np.int64)
    for u, r in enumerate(user_order(log)):
        before = r[log.timestamps[r] < cut]
        after = r[(log.timestamps[r] >= cut) & positive[r]]
        if len(before) and len(after):
            valid[u], test[u] = before[-1], after[0]
            before = before[:-1]
        train.append(before)
    return _assemble(log, train, valid, test, "global_time", cut)


def random_split(log: Interactions, seed: int = 0) -> Split:
    """Seeded random held-out test and validation events per user with >= 3 events."""
    rows = user_order(log)
    lengths = np.array([len(r) for r in rows], np.int64)
    rng = np.random.default_rng(seed)
    t_pos = np.floor(rng.random(len(rows)) * lengths).astype(np.int64)
    v_pos = np.floor(rng.random(len(rows)) * np.maximum(lengths - 1, 0)).astype(np.int64)
    v_pos += v_pos >= t_pos
    long = lengths >= 3
    test = np.array([r[t] if ok else -1 for r, t, ok in zip(rows, t_pos, long, strict=True)], np.int64)
    valid = np.array([r[v] if ok else -1 for r, v, ok in zip(rows, v_pos, long, strict=True)], np.int64)
    train = [np.delete(r, [t, v]) if ok else r for r, t, v, ok in zip(rows, t_pos, v_pos, long, strict=True)]
    return _assemble(log, train, valid, test, "random")


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


def load_items_csv(path: Path) -> dict[str, tuple[str, list[str]]]:
    """``item_id,title,categories[,...]`` with a header; ``categories`` ``|``-separated. The mapping
    ``Interactions.attach_items`` takes (as ``models.synthetic_log`` writes it)."""
    meta: dict[str, tuple[str, list[str]]] = {}
    with path.open(newline="") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            if not row.get("item_id") or row.get("title") is None:
                raise ValueError(f"{path}:{i + 2}: expected item_id,title,categories")
            meta[row["item_id"]] = (row["title"], [c for c in (row.get("categories") or "").split("|") if c])
    return meta


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True
