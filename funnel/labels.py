"""Label points of the ranker: what the platform saw, as groups of candidates with labels.

Two kinds, both training the same model:
- **Served feeds** (``feed_id`` on impressions): the items the feed showed, labelled ``click`` when the
  user clicked that slot (attributed by ``feed_id:position``, else the same user and item within
  ``LABEL_WINDOW_S``), ``deep`` for a like/purchase/share or a long dwell on it.
- **Organic positives** (no feed): the next positive interaction, ranked over the candidates the funnel
  retrieves at that moment (a bulk import such as MovieLens has only these). Per user the last
  ``last_n`` positives (``selection="last"``) or ``last_n`` seeded random ones (``"random"``).

Each group is a stop of the replay (``funnel.replay``): its features are computed from the state just
before the labelled event, so training is point in time by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from funnel.log import EventLog

LABEL_WINDOW_S = 300.0
Selection = Literal["last", "random"]
Ints = npt.NDArray[np.int64]
Slots = dict[tuple[str, int], tuple["FeedGroup", int]]
Shown = dict[tuple[str, str], list[tuple[float, "FeedGroup", int]]]


@dataclass
class FeedGroup:
    """One served feed: its items in slot order and what the user did with each."""

    feed_id: str
    user: str
    device: str
    first: int  # index of the feed's first impression event: the stop
    items: list[str] = field(default_factory=list)
    click: list[float] = field(default_factory=list)
    deep: list[float] = field(default_factory=list)
    positives: list[int] = field(default_factory=list)  # event indices of the labelled actions


@dataclass
class Labels:
    organic: Ints
    feeds: list[FeedGroup]

    @property
    def excluded(self) -> set[int]:
        """Positive events used as labels: the retrieval model must not train on them."""
        return {int(i) for i in self.organic} | {i for g in self.feeds for i in g.positives}

    def __len__(self) -> int:
        return len(self.organic) + len(self.feeds)


NO_LABELS = Labels(np.zeros(0, np.int64), [])


def select_labels(log: EventLog, last_n: int, selection: Selection, max_groups: int, seed: int) -> Labels:
    rng = np.random.default_rng(seed)
    organic = _organic(log, last_n, selection, rng)
    feeds = feed_groups(log)
    total = len(organic) + len(feeds)
    if total > max_groups:  # keep the newest of each kind, in proportion
        keep_feeds = round(max_groups * len(feeds) / total)
        feeds = sorted(feeds, key=lambda g: g.first)[len(feeds) - keep_feeds:]
        organic = np.sort(organic)[len(organic) - (max_groups - keep_feeds):]
    return Labels(np.sort(organic).astype(np.int64), sorted(feeds, key=lambda g: g.first))


def _organic(log: EventLog, last_n: int, selection: Selection, rng: np.random.Generator) -> Ints:
    rows = np.flatnonzero(log.positive() & np.array([f is None for f in log.feed_id], bool))
    if not len(rows) or last_n <= 0:
        return np.zeros(0, np.int64)
    users = log.user[rows]
    order = np.argsort(users, kind="stable")  # rows stay in time order within a user
    users, rows = users[order], rows[order]
    bounds = np.flatnonzero(np.r_[True, users[1:] != users[:-1], True])
    picked = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        own = rows[a:b]
        if selection == "random" and len(own) > last_n:
            picked.append(rng.choice(own, size=last_n, replace=False))
        else:
            picked.append(own[-last_n:])
    return np.concatenate(picked).astype(np.int64)


def feed_groups(log: EventLog) -> list[FeedGroup]:
    """Every served feed in the log with its per-slot labels."""
    groups: dict[str, FeedGroup] = {}
    slots: Slots = {}
    for j in np.flatnonzero((log.type == "impression") & (log.position >= 0)):
        fid = log.feed_id[j]
        if fid is None:
            continue
        g = groups.setdefault(fid, FeedGroup(fid, str(log.user[j]), str(log.device[j]), int(j)))
        slots[(fid, int(log.position[j]))] = (g, len(g.items))
        g.items.append(str(log.item[j]))
        g.click.append(0.0)
        g.deep.append(0.0)
    _attach_actions(log, groups, slots)
    return list(groups.values())


def _attach_actions(log: EventLog, groups: dict[str, FeedGroup], slots: Slots) -> None:
    deep, click = log.deep(), log.type == "click"
    shown: Shown = {}
    for g in groups.values():
        for k, item in enumerate(g.items):
            shown.setdefault((g.user, item), []).append((float(log.ts[g.first]), g, k))
    for j in np.flatnonzero(click | deep):
        hit = _slot_of(log, int(j), slots, shown)
        if hit is None:
            continue
        g, k = hit
        (g.click if click[j] else g.deep)[k] = 1.0
        g.positives.append(int(j))


def _slot_of(log: EventLog, j: int, slots: Slots, shown: Shown) -> tuple[FeedGroup, int] | None:
    fid, pos = log.feed_id[j], int(log.position[j])
    if fid is not None and (fid, pos) in slots:
        g, k = slots[(fid, pos)]
        return (g, k) if g.items[k] == log.item[j] else None
    ts = float(log.ts[j])
    before = [(t, g, k) for t, g, k in shown.get((str(log.user[j]), str(log.item[j])), [])
              if t <= ts <= t + LABEL_WINDOW_S]
    if not before:
        return None
    _, g, k = max(before, key=lambda x: x[0])
    return g, k
