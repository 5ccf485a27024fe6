"""What shown feeds were worth by the simulator's hidden truth, against a random and an oracle feed.

Each time a simulated user is shown a feed, :meth:`Truth.moment` scores three feeds for that user at
that moment, over the same eligible items: the catalogue as it stands (new items included) minus the
items the user already acted on (clicked, liked, dwelt on, skipped: the platform's seen set, which it
never shows again, so neither may the oracle):

- ``ours``: the feed shown (its first ``shown`` items, the part :meth:`World.respond` is given);
- ``random``: a uniformly random feed of eligible items; its expectation, the mean click probability
  of the eligible items, is used instead of a draw (same expectation, no sampling noise);
- ``oracle``: the eligible items in order of true click probability, as many as ours shows.

A feed's true CTR is its click probability per examined slot: each position is weighted by the
probability that ``World.respond`` examines it, ``1 / log2(position + 2)``. Windows aggregate as ratios
of means: ``lift = mean(ours) / mean(random)``, ``gap = (mean(ours) - mean(random)) /
(mean(oracle) - mean(random))``.

Young items (upserted less than ``young_s`` ago) get their own comparison: the young items the feed
shows, against a random young eligible item and the user's best young eligible items (as many as the
feed shows), unweighted: how well the platform targets what it cannot have learned much about yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.simulator import World

F64 = npt.NDArray[np.float64]
Triple = tuple[float, float, float]


def examination(n: int) -> F64:
    """The probability that World.respond examines positions 0..n-1."""
    return np.asarray(1.0 / np.log2(np.arange(n) + 2.0), dtype=np.float64)


def feed_ctr(probs: F64) -> float:
    """Click probability per examined slot of a feed whose items have true click ``probs``, in order."""
    if len(probs) == 0:
        return 0.0
    w = examination(len(probs))
    return float(probs @ w / w.sum())


@dataclass(frozen=True)
class Moment:
    """One feed shown to one user: its true CTR, a random feed's and the oracle's, and context."""

    t: float
    ours: float
    random: float
    oracle: float
    cold: bool
    young: Triple | None = None  # (ours, random, oracle) over young items, when the feed shows any
    young_slots: int = 0
    model_version: str = "none"
    index_version: str = "none"
    stale_slots: int = 0  # shown items the user had already acted on (a feed older than their reaction)


class Truth:
    """Scores shown feeds by the world's click model. Call :meth:`add` for every item as it is
    upserted."""

    def __init__(self, world: World, young_s: float = 600.0) -> None:
        self.world, self.young_s = world, young_s
        self.ids: list[str] = []
        self.created = np.zeros(0)
        self._pos: dict[str, int] = {}

    def add(self, items: Iterable[tuple[str, float]]) -> None:
        """Items as they are upserted: (item_id, created_at)."""
        new = [(iid, ts) for iid, ts in items if iid not in self._pos]
        self._pos.update({iid: len(self.ids) + j for j, (iid, _) in enumerate(new)})
        self.ids.extend(iid for iid, _ in new)
        self.created = np.concatenate([self.created, np.array([ts for _, ts in new], np.float64)])

    def age(self, item_id: str, now: float) -> float | None:
        j = self._pos.get(item_id)
        return None if j is None else now - float(self.created[j])

    def moment(self, user_id: str, item_ids: Sequence[str], now: float, t: float, seen: Set[str],
               cold: bool, versions: tuple[str, str] = ("none", "none")) -> Moment | None:
        shown = [i for i in item_ids if i in self._pos]
        if not shown or not self.ids:
            return None
        probs = self.world.click_probs(user_id, self.ids)
        eligible = np.ones(len(self.ids), bool)
        eligible[np.array([self._pos[i] for i in seen if i in self._pos], np.int64)] = False
        if not eligible.any():
            return None
        p_shown = probs[[self._pos[i] for i in shown]]
        top = np.sort(probs[eligible])[::-1][: len(shown)]
        young = self._young(probs, eligible, shown, p_shown, now)
        return Moment(t, feed_ctr(p_shown), float(probs[eligible].mean()), feed_ctr(top), cold, young,
                      sum(1 for i in shown if self._is_young(i, now)), *versions,
                      stale_slots=sum(1 for i in shown if i in seen))

    def _is_young(self, item_id: str, now: float) -> bool:
        return now - float(self.created[self._pos[item_id]]) < self.young_s

    def _young(self, probs: F64, eligible: npt.NDArray[np.bool_], shown: Sequence[str], p_shown: F64,
               now: float) -> Triple | None:
        mine = np.array([self._is_young(i, now) for i in shown], bool)
        pool = eligible & (now - self.created < self.young_s)
        if not mine.any() or not pool.any():
            return None
        m = int(mine.sum())
        best = np.sort(probs[pool])[::-1][:m]
        return float(p_shown[mine].mean()), float(probs[pool].mean()), float(best.mean())


def _ratio(num: float, den: float) -> float | None:
    return round(num / den, 4) if den > 0 else None


def compare(ours: float, random: float, oracle: float) -> dict[str, float | None]:
    """Lift over random and the share of the random-to-oracle gap captured."""
    return {"lift": _ratio(ours, random), "gap": _ratio(ours - random, oracle - random)}


def summarise(moments: Sequence[Moment]) -> dict[str, float | int | None]:
    """Means of ours/random/oracle over ``moments``, their lift and gap (ratios of the means)."""
    if not moments:
        return {"n": 0, "ours": None, "random": None, "oracle": None, "lift": None, "gap": None}
    o, r, b = (float(np.mean([getattr(m, k) for m in moments])) for k in ("ours", "random", "oracle"))
    return {"n": len(moments), "ours": round(o, 5), "random": round(r, 5), "oracle": round(b, 5),
            **compare(o, r, b)}


def summarise_young(moments: Sequence[Moment]) -> dict[str, float | int | None]:
    """The young-item comparison over the moments whose feed showed young items."""
    rows = [m.young for m in moments if m.young is not None]
    slots = sum(m.young_slots for m in moments)
    if not rows:
        return {"n": 0, "young_slots": slots, "ours": None, "random": None, "oracle": None, "lift": None,
                "gap": None}
    o, r, b = (float(np.mean([row[k] for row in rows])) for k in range(3))
    return {"n": len(rows), "young_slots": slots, "ours": round(o, 5), "random": round(r, 5),
            "oracle": round(b, 5), **compare(o, r, b)}


def personalisation(world: World, user_id: str, item_ids: Sequence[str],
                    catalogue: Sequence[str]) -> tuple[float, float] | None:
    """(mean true click probability of a feed's items, the same over the whole catalogue) for one user:
    their ratio is the demo's ``personalisation_lift`` (1.0: no better than random catalogue items)."""
    items = [i for i in item_ids if world.has_item(i)]
    if not items:
        return None
    mean_feed = float(world.click_probs(user_id, items).mean())
    return mean_feed, float(world.click_probs(user_id, list(catalogue)).mean())
