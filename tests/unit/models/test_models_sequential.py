"""Always-valid A/B statistics, the sample-ratio check and team-draft interleaving."""

from __future__ import annotations

import numpy as np

from models.interleaving import A, B, credit, preference, team_draft
from models.sequential import Stat, compare, ratio, running, sample_ratio

LOOKS, USERS_PER_LOOK = 30, 200


def _ab_path(rng: np.random.Generator, lift: float) -> tuple[list[float], list[float]]:
    """One experiment read at every look: per-user clicks/impressions in two arms (users differ in
    CTR), the always-valid p-value (running min) and the naive fixed-horizon p-value at each look."""
    history: list = []
    p_seq, p_fixed = [], []
    num = {0: np.zeros(0), 1: np.zeros(0)}
    den = {0: np.zeros(0), 1: np.zeros(0)}
    for _ in range(LOOKS):
        for arm in (0, 1):
            imps = rng.integers(5, 40, USERS_PER_LOOK).astype(float)
            ctr = rng.beta(2.0, 38.0, USERS_PER_LOOK) * (1.0 + lift * arm)
            num[arm] = np.concatenate([num[arm], rng.binomial(imps.astype(int), ctr)])
            den[arm] = np.concatenate([den[arm], imps])
        c = compare(ratio(num[0], den[0]), ratio(num[1], den[1]), history=history)
        history.append(c.look())
        p_seq.append(c.p_always_valid)
        p_fixed.append(c.p_value)
    return p_seq, p_fixed


def test_always_valid_p_controls_false_alarms_under_peeking_where_fixed_p_does_not():
    rng = np.random.default_rng(0)
    runs = 200
    seq_alarms = fixed_alarms = 0
    for _ in range(runs):
        p_seq, p_fixed = _ab_path(rng, 0.0)
        seq_alarms += min(p_seq) < 0.05
        fixed_alarms += min(p_fixed) < 0.05
    assert seq_alarms <= 0.06 * runs, seq_alarms
    assert fixed_alarms >= 0.15 * runs, fixed_alarms  # peeking at a fixed-horizon test: many false alarms


def test_a_real_lift_is_declared_with_the_right_sign():
    rng = np.random.default_rng(1)
    declared = 0
    for _ in range(10):
        p_seq, _ = _ab_path(rng, 0.25)
        declared += p_seq[-1] < 0.05
    assert declared >= 8
    c = compare(Stat(0.05, 0.001, 1000), Stat(0.045, 0.001, 1000))
    assert c.declared == "control" and c.diff < 0
    assert compare(Stat(0.05, 0.001, 1000), Stat(0.045, 0.001, 1000), higher_is_better=False).declared \
        == "treatment"


def test_running_sequence_only_shrinks_and_p_only_falls():
    from models.sequential import always_valid_test

    looks = running([always_valid_test(d, 1e-4, 1e-4) for d in (0.0, 0.03, -0.01, 0.02)])
    assert all(b.p_value <= a.p_value for a, b in zip(looks, looks[1:], strict=False))
    assert all(b.ci[0] >= a.ci[0] and b.ci[1] <= a.ci[1] for a, b in zip(looks, looks[1:], strict=False))


def test_ratio_standard_error_is_per_user():
    """Clustered clicks (whole users click or not) must widen the interval: the impression-level
    binomial SE would be far too small."""
    rng = np.random.default_rng(2)
    imps = np.full(400, 50.0)
    clicks = np.where(rng.random(400) < 0.1, 50.0, 0.0)
    s = ratio(clicks, imps)
    binomial = np.sqrt(s.value * (1 - s.value) / imps.sum())
    assert s.se > 4 * binomial


def test_sample_ratio_mismatch():
    assert not sample_ratio({"a": 5000, "b": 5080}, {"a": 0.5, "b": 0.5}).mismatch
    bad = sample_ratio({"a": 5000, "b": 5400}, {"a": 0.5, "b": 0.5})
    assert bad.mismatch and bad.p_value < 0.001
    assert not sample_ratio({"a": 2000, "b": 8000}, {"a": 0.2, "b": 0.8}).mismatch


def test_team_draft_keeps_each_rankings_order_and_balances_teams():
    rng = np.random.default_rng(3)
    ra, rb = [f"i{j}" for j in range(10)], [f"i{j}" for j in (3, 1, 11, 12, 0, 5, 13, 14, 2, 15)]
    for _ in range(50):
        items, teams = team_draft(ra, rb, 10, rng)
        assert len(set(items)) == 10 and abs(teams.count(A) - teams.count(B)) <= 1
        for team, ranking in ((A, ra), (B, rb)):
            mine = [ranking.index(i) for i, t in zip(items, teams, strict=True) if t == team]
            assert mine == sorted(mine)
    items, teams = team_draft(["x"], ["x", "y", "z"], 3, rng)  # A runs out: B fills
    assert items[0] == "x" and sorted(items) == ["x", "y", "z"]
    assert credit([A, B, B], [True, True, False]) == (1, 1)


def test_interleaving_preference_finds_the_better_ranker_and_not_a_tie():
    rng = np.random.default_rng(4)
    rel = {f"i{j}": 0.3 * 0.85 ** j for j in range(20)}
    good = sorted(rel, key=rel.get, reverse=True)
    bad = good[5:] + good[:5]
    for rb, expect in ((good, "B"), (bad, "A")):
        wins_a, wins_b = np.zeros(300), np.zeros(300)
        for u in range(300):
            for _ in range(4):
                items, teams = team_draft(bad if expect == "B" else good, rb, 10, rng)
                clicks = [rng.random() < rel[i] / np.log2(k + 2) for k, i in enumerate(items)]
                ca, cb = credit(teams, clicks)
                wins_a[u] += ca > cb
                wins_b[u] += cb > ca
        pref = preference(wins_a, wins_b)
        assert pref.winner == expect, pref
    same = preference(rng.binomial(4, 0.3, 300), rng.binomial(4, 0.3, 300))
    assert same.winner is None
