"""A seeded, vectorised generator of a plausible interaction log (the scale benchmark's data set).

The world: items belong to topics (Dirichlet-sized) and sit on a per-topic "chain" (neighbours on a
chain are alike, like episodes or a shop aisle); each item has a Zipf popularity and a hidden quality.
Each user follows ``topics_per_user`` topics with Dirichlet weights and has, per topic, a preferred
region of the chain (a latent taste), plus a log-normal activity level. Users act in sessions spread
over ``days`` days with a diurnal rhythm (events 1 s + Exp(``gap_s``) apart). A session opens with a
"jump" and each later event is either a chain "step" (1-3 items forward from the previous item, the
sequential structure) or another jump. A jump explores the whole catalogue by popularity
(``explore``), or picks one of the user's topics and then either a popular item of it
(``popular_share``) or an item near the user's preferred region. ``new_item_share`` of the items are
released during the window; events that would precede a release are redrawn among released items.
Weights are 1-5 ratings: higher on the user's main topic and on high-quality items.

So popularity (Pop), taste clusters (ItemKNN, two-tower) and order (co-visitation) all carry signal,
and none is the whole story.

Files written by ``write_synthetic_log(path, n_users, n_items, n_events, seed)``:

- ``path``: CSV ``user_id,item_id,timestamp,weight`` with a header, rows in time order; timestamps are
  integer Unix seconds; the format ``models.data.load_csv`` reads.
- ``items_path(path)`` (``<stem>.items.csv``): CSV ``item_id,title,categories,release_ts`` with a
  header; ``categories`` is ``|``-separated (one topic name here); ``models.data.load_items_csv``
  reads it into ``Interactions.attach_items``.

CLI: ``python -m models.synthetic_log OUT.csv [--users N --items N --events N --seed N]``.

Example:
    >>> log = generate_log(LogConfig(n_users=50, n_items=80, n_events=1000, n_topics=4, seed=1))
    >>> len(log.users), int(log.users.max()) < 50, bool((np.diff(log.timestamps) >= 0).all())
    (1000, True, True)
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from models.simulator import CATEGORY_WORDS, FILLERS

IntArray = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
DAY = 86400.0
# share of a day's sessions starting in each hour (quiet nights, busy evenings)
HOURLY = np.array([1, 1, 1, 1, 1, 2, 3, 5, 6, 6, 6, 6, 7, 6, 6, 6, 6, 7, 9, 10, 10, 9, 6, 3], np.float64)


@dataclass(frozen=True)
class LogConfig:
    n_users: int = 50_000
    n_items: int = 50_000
    n_events: int = 1_000_000
    seed: int = 0
    n_topics: int = 40
    topics_per_user: int = 3
    days: float = 28.0
    start_ts: float = 1_704_067_200.0  # 2024-01-01 UTC
    zipf: float = 0.9
    explore: float = 0.1
    popular_share: float = 0.3
    taste_width: float = 0.005
    session_continue: float = 0.8
    step_prob: float = 0.4
    gap_s: float = 90.0
    new_item_share: float = 0.1
    min_events: int = 3

    def __post_init__(self) -> None:
        if min(self.n_users, self.n_items, self.n_topics, self.topics_per_user) < 1:
            raise ValueError("n_users, n_items, n_topics and topics_per_user must be >= 1")
        if self.n_events < self.n_users:
            raise ValueError(f"n_events ({self.n_events}) must be >= n_users ({self.n_users})")


@dataclass
class SyntheticLog:
    """Events in time order (codes) and the item catalogue."""

    users: IntArray
    items: IntArray
    timestamps: F64
    weights: F64
    item_topic: IntArray
    item_release: F64
    topic_names: list[str]


@dataclass
class _Catalogue:
    topic: IntArray     # per item code
    chain: IntArray     # item codes grouped by topic, in chain order
    start: IntArray     # per topic, first chain position
    size: IntArray      # per topic, number of items
    pos: IntArray       # per item code, its chain position
    pop: F64            # per item code, popularity weight
    quality: F64
    release: F64        # per item code, seconds after the start


def _catalogue(cfg: LogConfig, rng: np.random.Generator) -> _Catalogue:
    n, t = cfg.n_items, cfg.n_topics
    topic = rng.choice(t, n, p=rng.dirichlet(np.full(t, 2.0)))
    chain = np.lexsort((rng.random(n), topic)).astype(np.int64)
    size = np.bincount(topic, minlength=t).astype(np.int64)
    start = np.concatenate([[0], np.cumsum(size)[:-1]]).astype(np.int64)
    pos = np.empty(n, np.int64)
    pos[chain] = np.arange(n)
    pop = np.power(rng.permutation(n) + 1.0, -cfg.zipf, dtype=np.float64)
    new = rng.random(n) < cfg.new_item_share
    release = np.where(new, rng.random(n) * cfg.days * DAY, 0.0)
    return _Catalogue(topic.astype(np.int64), chain, start, size, pos, pop, rng.normal(0, 0.7, n), release)


def _sample(cum: F64, x: F64) -> IntArray:
    return np.minimum(np.searchsorted(cum, x * cum[-1], "right"), len(cum) - 1).astype(np.int64)


def _popular_in_topic(cat: _Catalogue, topics: IntArray, rng: np.random.Generator) -> IntArray:
    """Chain positions drawn by popularity within each given topic (one cumulative array, offset by
    topic so that a single ``searchsorted`` serves every topic)."""
    w = cat.pop[cat.chain]
    totals = np.bincount(cat.topic, weights=cat.pop, minlength=len(cat.size))
    chain_topic = cat.topic[cat.chain]
    before = np.repeat(np.cumsum(totals) - totals, cat.size)
    key = chain_topic + (np.cumsum(w) - before) / totals[chain_topic]
    pos = np.searchsorted(key, topics + rng.random(len(topics)), "left")
    return np.clip(pos, cat.start[topics], cat.start[topics] + cat.size[topics] - 1)


@dataclass
class _Users:
    topics: IntArray  # [users, k] topic codes (topics with items, by their size)
    mix: F64          # [users, k] cumulative topic weights
    center: F64       # [users, k] preferred region of each topic's chain, in [0, 1)


def _users(cfg: LogConfig, cat: _Catalogue, rng: np.random.Generator) -> _Users:
    k = cfg.topics_per_user
    topics = rng.choice(len(cat.size), (cfg.n_users, k), p=cat.size / cat.size.sum())
    weight = rng.dirichlet(np.full(k, 0.7), cfg.n_users)
    order = np.argsort(-weight, axis=1)  # the main topic first
    return _Users(np.take_along_axis(topics, order, axis=1).astype(np.int64),
                  np.cumsum(np.take_along_axis(weight, order, axis=1), axis=1), rng.random((cfg.n_users, k)))


def _activity(cfg: LogConfig, rng: np.random.Generator) -> IntArray:
    floor = min(cfg.min_events, cfg.n_events // cfg.n_users)
    share = rng.lognormal(0.0, 1.0, cfg.n_users)
    extra = rng.multinomial(cfg.n_events - floor * cfg.n_users, share / share.sum())
    return (floor + extra).astype(np.int64)


def _session_times(cfg: LogConfig, user: IntArray, rng: np.random.Generator) -> tuple[IntArray, F64]:
    """Per event its session code and timestamp offset (seconds); each user's sessions in time order."""
    first = np.r_[True, user[1:] != user[:-1]]
    new = first | (rng.random(len(user)) > cfg.session_continue)
    sid = np.cumsum(new) - 1
    s_user = user[new]
    day = np.floor(rng.random(len(s_user)) * cfg.days)
    hour = rng.choice(24, len(s_user), p=HOURLY / HOURLY.sum())
    start = day * DAY + (hour + rng.random(len(s_user))) * 3600.0
    start = start[np.lexsort((start, s_user))]
    gaps = np.where(new, 0.0, 1.0 + rng.exponential(cfg.gap_s, len(user)))
    run = np.cumsum(gaps)
    return sid, start[sid] + run - run[np.flatnonzero(new)][sid]


def _jumps(cfg: LogConfig, cat: _Catalogue, people: _Users, user: IntArray,
           rng: np.random.Generator) -> IntArray:
    """Chain positions for jump events of the given users."""
    k = cfg.topics_per_user
    pick = np.minimum((people.mix[user] < rng.random((len(user), 1))).sum(axis=1), k - 1)
    topic = people.topics[user, pick]
    region = (people.center[user, pick] + rng.normal(0, cfg.taste_width, len(user))) % 1.0
    near = cat.start[topic] + np.floor(region * cat.size[topic]).astype(np.int64)
    popular = _popular_in_topic(cat, topic, rng)
    explore = cat.pos[_sample(np.cumsum(cat.pop), rng.random(len(user)))]
    roll = rng.random(len(user))
    return np.where(roll < cfg.explore, explore,
                    np.where(roll < cfg.explore + (1 - cfg.explore) * cfg.popular_share, popular, near))


def _walk(cat: _Catalogue, jump_pos: IntArray, is_jump: npt.NDArray[np.bool_],
          rng: np.random.Generator) -> IntArray:
    """Item codes: each jump's item, then chain steps of 1-3 forward until the next jump."""
    seg = np.cumsum(is_jump) - 1
    steps = np.where(is_jump, 0, rng.choice([1, 2, 3], len(is_jump), p=[0.7, 0.2, 0.1]))
    run = np.cumsum(steps)
    offset = run - run[np.flatnonzero(is_jump)][seg]
    anchor = jump_pos[seg]
    topic = cat.topic[cat.chain[anchor]]
    local = (anchor - cat.start[topic] + offset) % cat.size[topic]
    return cat.chain[cat.start[topic] + local]


def _released(cat: _Catalogue, items: IntArray, ts: F64, rng: np.random.Generator) -> IntArray:
    """Events before their item's release are redrawn by popularity among items already out."""
    early = np.flatnonzero(cat.release[items] > ts)
    for _ in range(20):
        if not len(early):
            break
        items[early] = _sample(np.cumsum(cat.pop), rng.random(len(early)))
        early = early[cat.release[items[early]] > ts[early]]
    items[early] = np.argmin(cat.release)
    return items


def _ratings(cat: _Catalogue, main_topic: IntArray, user: IntArray, items: IntArray,
             rng: np.random.Generator) -> F64:
    affinity = (cat.topic[items] == main_topic[user]) * 1.0
    raw = 3.0 + affinity + cat.quality[items] + rng.normal(0, 0.8, len(items))
    return np.clip(np.round(raw), 1, 5)


def generate_log(cfg: LogConfig) -> SyntheticLog:
    rng = np.random.default_rng(cfg.seed)
    cat = _catalogue(cfg, rng)
    user = np.repeat(np.arange(cfg.n_users, dtype=np.int64), _activity(cfg, rng))
    sid, offset = _session_times(cfg, user, rng)
    is_jump = np.r_[True, sid[1:] != sid[:-1]] | (rng.random(len(user)) >= cfg.step_prob)
    people = _users(cfg, cat, rng)
    jump_pos = _jumps(cfg, cat, people, user[is_jump], rng)
    items = _released(cat, _walk(cat, jump_pos, is_jump, rng), offset, rng)
    weights = _ratings(cat, people.topics[:, 0], user, items, rng)
    order = np.argsort(offset, kind="stable")
    ts = np.floor(cfg.start_ts + offset[order])
    names = [_topic_name(t) for t in range(cfg.n_topics)]
    return SyntheticLog(user[order], items[order], ts, weights[order], cat.topic,
                        cfg.start_ts + cat.release, names)


def _topic_name(t: int) -> str:
    base = list(CATEGORY_WORDS)
    return base[t] if t < len(base) else f"{base[t % len(base)]}{t // len(base)}"


def _titles(log: SyntheticLog, seed: int) -> list[str]:
    """Three words per title: a filler and two of the topic's words (text carries the topic)."""
    rng = np.random.default_rng(seed + 1)
    vocab = list(CATEGORY_WORDS.values())
    picks = rng.integers(0, 10, (len(log.item_topic), 3)).tolist()
    out = []
    for t, (f, a, b) in zip(log.item_topic.tolist(), picks, strict=True):
        words = vocab[t % len(vocab)]
        out.append(f"{FILLERS[f % len(FILLERS)]} {words[a % len(words)]} {words[b % len(words)]}")
    return out


def items_path(path: Path) -> Path:
    """Where ``write_synthetic_log`` puts the items file for events at ``path``."""
    return path.with_name(f"{path.stem}.items.csv")


def write_synthetic_log(path: Path, n_users: int = 50_000, n_items: int = 50_000,
                        n_events: int = 1_000_000, seed: int = 0) -> tuple[Path, Path]:
    """Generate (see ``LogConfig`` defaults) and write the events and the items file; returns both paths."""
    log = generate_log(LogConfig(n_users=n_users, n_items=n_items, n_events=n_events, seed=seed))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = zip(log.users.tolist(), log.items.tolist(), log.timestamps.astype(np.int64).tolist(),
               log.weights.astype(np.int64).tolist(), strict=True)
    with path.open("w") as fh:
        fh.write("user_id,item_id,timestamp,weight\n")
        fh.writelines(f"u{u},i{i},{t},{w}\n" for u, i, t, w in rows)
    ipath = items_path(path)
    items = zip(_titles(log, seed), log.item_topic.tolist(), log.item_release.astype(np.int64).tolist(),
                strict=True)
    with ipath.open("w") as fh:
        fh.write("item_id,title,categories,release_ts\n")
        fh.writelines(f"i{j},{title},{log.topic_names[t]},{r}\n" for j, (title, t, r) in enumerate(items))
    return path, ipath


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Write a synthetic interaction log (CSV) and its items file.")
    p.add_argument("out", type=Path)
    p.add_argument("--users", type=int, default=50_000)
    p.add_argument("--items", type=int, default=50_000)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    events, items = write_synthetic_log(a.out, a.users, a.items, a.events, a.seed)
    print(f"wrote {events} and {items}")


if __name__ == "__main__":
    main()
