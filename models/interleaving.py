"""Team-draft interleaving (Radlinski, Kurup and Joachims, 2008) and its per-user preference test.

Two rankings are merged into one list: in each round a coin decides which team picks first, then
each team adds its highest-ranked item not yet in the list. A click credits the team that placed the
item. One impression is won by the team with more credited clicks; a user prefers the team that won
more of their impressions. The test is on users (the unit that was sampled), never on clicks.

Example:
    >>> rng = np.random.default_rng(0)
    >>> items, teams = team_draft(["a", "b", "c"], ["b", "c", "d"], 4, rng)
    >>> sorted(items), len(teams)
    (['a', 'b', 'c', 'd'], 4)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from models.sequential import always_valid_test

F64 = npt.NDArray[np.float64]
A, B = 0, 1


def team_draft(ranking_a: Sequence[str], ranking_b: Sequence[str], n: int,
               rng: np.random.Generator) -> tuple[list[str], list[int]]:
    """Up to ``n`` distinct items and the team (``A`` = 0, ``B`` = 1) that placed each one. The team
    with fewer picks goes next; on a tie a coin decides. A team with nothing left lets the other fill."""
    out: list[str] = []
    teams: list[int] = []
    taken: set[str] = set()
    ptr, count, rankings = [0, 0], [0, 0], (ranking_a, ranking_b)
    while len(out) < n:
        team = int(rng.integers(2)) if count[A] == count[B] else (A if count[A] < count[B] else B)
        item = _next(rankings[team], ptr, team, taken)
        if item is None:
            team = 1 - team
            item = _next(rankings[team], ptr, team, taken)
            if item is None:
                break
        out.append(item)
        teams.append(team)
        taken.add(item)
        count[team] += 1
    return out, teams


def _next(ranking: Sequence[str], ptr: list[int], team: int, taken: set[str]) -> str | None:
    while ptr[team] < len(ranking) and ranking[ptr[team]] in taken:
        ptr[team] += 1
    return ranking[ptr[team]] if ptr[team] < len(ranking) else None


def credit(teams: Sequence[int], clicked: Sequence[bool]) -> tuple[int, int]:
    """Clicks credited to team A and team B in one interleaved impression."""
    t = np.asarray(teams)
    c = np.asarray(clicked, bool)
    return int(np.sum(c & (t == A))), int(np.sum(c & (t == B)))


@dataclass(frozen=True)
class Preference:
    """Per-user preference between the two rankers: ``delta`` is the mean over users of
    (impressions B won - impressions A won) / impressions with a winner; > 0 means B is preferred."""

    users: int
    prefer_a: int
    prefer_b: int
    ties: int
    delta: float
    se: float
    ci: tuple[float, float]
    p_value: float
    p_always_valid: float
    winner: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def preference(wins_a: npt.ArrayLike, wins_b: npt.ArrayLike, alpha: float = 0.05,
               tau: float = 0.1) -> Preference:
    """From each user's count of impressions won by A and by B. ``p_value`` is the two-sided sign
    test over users with a preference (fixed horizon); ``p_always_valid`` the mixture sequential test
    on ``delta`` (valid however often it is checked; ``tau`` is the mixing scale of delta)."""
    a, b = np.asarray(wins_a, np.float64), np.asarray(wins_b, np.float64)
    decided = (a + b) > 0
    score = np.where(decided, (b - a) / np.maximum(a + b, 1.0), 0.0)[decided]
    n = int(decided.sum())
    pa, pb = int(np.sum(score < 0)), int(np.sum(score > 0))
    delta = float(score.mean()) if n else 0.0
    var = float(score.var(ddof=1)) / n if n > 1 else float("inf")
    test = always_valid_test(delta, var, tau ** 2, alpha)
    sign = float(stats.binomtest(pb, pa + pb, 0.5).pvalue) if pa + pb else 1.0
    winner = None if test.p_value >= alpha else ("B" if delta > 0 else "A")
    return Preference(users=n, prefer_a=pa, prefer_b=pb, ties=n - pa - pb, delta=delta,
                      se=float(np.sqrt(var)) if np.isfinite(var) else float("inf"),
                      ci=test.ci, p_value=sign, p_always_valid=test.p_value, winner=winner)
