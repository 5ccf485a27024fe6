"""Bandit policies: learning, seeding, snapshot/restore; the in-process posterior store."""

from __future__ import annotations

import numpy as np

from feature_store.online.memory import InMemoryBanditState
from models.bandits import BetaThompson, LinTS, LinUCB


def test_thompson_prefers_the_better_arm_after_updates() -> None:
    pol = BetaThompson(seed=1)
    for _ in range(200):
        pol.update("good", 1.0)
        pol.update("bad", 0.0)
    picks = [pol.pull(["good", "bad"]) for _ in range(50)]
    assert picks.count("good") == 50


def test_thompson_is_seeded_and_snapshot_restores_state_and_rng() -> None:
    a, b = BetaThompson(seed=7), BetaThompson(seed=7)
    assert np.array_equal(a.sample(["x", "y"]), b.sample(["x", "y"]))
    a.update("x", 1.0)
    snap = a.snapshot()
    c = BetaThompson(seed=99)
    c.restore(snap)
    assert c.posterior("x") == (2.0, 1.0)
    assert np.array_equal(a.sample(["x", "y"]), c.sample(["x", "y"]))


def test_from_counts_matches_posterior_convention() -> None:
    pol = BetaThompson.from_counts({"i": 10.0}, {"i": 3.0}, prior_alpha=1.0, prior_beta=20.0)
    assert pol.posterior("i") == (4.0, 27.0)


def test_linucb_and_lints_learn_a_context_dependent_best_arm() -> None:
    for pol in (LinUCB(dim=3, alpha=0.1, seed=0), LinTS(dim=3, alpha=0.05, seed=0)):
        x_ios, x_and = [1.0, 1.0, 0.0], [1.0, 0.0, 1.0]
        for _ in range(100):
            pol.update("a", x_ios, 1.0)
            pol.update("a", x_and, 0.0)
            pol.update("b", x_ios, 0.0)
            pol.update("b", x_and, 1.0)
        assert pol.pull(["a", "b"], x_ios) == "a"
        assert pol.pull(["a", "b"], x_and) == "b"
        clone = type(pol)(dim=3, alpha=pol.alpha, seed=5)
        clone.restore(pol.snapshot())
        assert np.allclose(clone.scores(["a"], x_ios), pol.scores(["a"], x_ios)) or isinstance(pol, LinTS)


def test_in_memory_bandit_state_posteriors() -> None:
    store = InMemoryBanditState(prior_alpha=1.0, prior_beta=20.0)
    store.record("all", "i1", impressions=10, clicks=2)
    alpha, beta = store.posteriors("all", ["i1", "unknown"])
    assert alpha.tolist() == [3.0, 1.0] and beta.tolist() == [28.0, 20.0]
