"""Off-policy estimators on synthetic slate logs with a known truth, and the position-based click model."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from models.click_model import PositionBasedModel
from models.ope import clipped_share, dr, ips, per_slot_terms, position_based_terms, snips, switch_dr

K, N_ITEMS = 5, 8
THETA = 1.0 / np.log2(np.arange(K) + 2.0)


def _world(rng: np.random.Generator, rounds: int) -> tuple[np.ndarray, np.ndarray]:
    """Per round: relevance of every item (contexts differ) and the logging policy's per-slot
    distribution over items (softmax of a noisy score, different per slot)."""
    rel = rng.beta(1.0, 6.0, size=(rounds, N_ITEMS))
    logits = 3.0 * rel[:, None, :] + rng.normal(size=(rounds, K, N_ITEMS))
    mu = np.exp(logits)
    return rel, mu / mu.sum(axis=2, keepdims=True)


def _log(rng: np.random.Generator, rel: np.ndarray, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each slot draws its item from mu (independently); clicks ~ theta_k * relevance."""
    cum = mu.cumsum(axis=2)
    items = (rng.random(mu.shape[:2])[:, :, None] > cum).sum(axis=2).clip(0, N_ITEMS - 1)
    p = THETA[None, :] * np.take_along_axis(rel, items, axis=1)
    return items, (rng.random(p.shape) < p).astype(float)


def _target(rel: np.ndarray) -> np.ndarray:
    """A deterministic target: the K most relevant items in order (what a good ranker would do)."""
    return np.argsort(-rel, axis=1)[:, :K]


def _terms(rng: np.random.Generator, rounds: int, model_noise: float):
    rel, mu = _world(rng, rounds)
    items, clicks = _log(rng, rel, mu)
    tgt = _target(rel)
    truth = float(np.mean(THETA[None, :] * np.take_along_axis(rel, tgt, axis=1)))
    logged_mu = np.take_along_axis(mu, items[:, :, None], axis=2)[:, :, 0]
    target_p = (items == tgt).astype(float)
    noisy = np.clip(rel * np.exp(model_noise * rng.normal(size=rel.shape)), 0, 1)  # an imperfect model
    q = THETA[None, :] * np.take_along_axis(noisy, items, axis=1)
    dm = np.sum(THETA[None, :] * np.take_along_axis(noisy, tgt, axis=1), axis=1)
    return per_slot_terms(clicks, logged_mu, target_p, q, dm), truth


def test_ips_snips_dr_are_unbiased_and_their_intervals_cover():
    rng = np.random.default_rng(0)
    covered = {"ips": 0, "snips": 0, "dr": 0}
    errors: dict[str, list[float]] = {k: [] for k in covered}
    reps = 40
    for _ in range(reps):
        terms, truth = _terms(rng, 3000, model_noise=0.3)
        for name, fn in (("ips", ips), ("snips", snips), ("dr", dr)):
            est = fn(terms)
            covered[name] += est.ci[0] <= truth <= est.ci[1]
            errors[name].append(est.value - truth)
    for name in covered:
        bias, spread = float(np.mean(errors[name])), float(np.std(errors[name]))
        assert abs(bias) < 3 * spread / np.sqrt(reps), (name, bias, spread)
        assert covered[name] >= 0.85 * reps, (name, covered[name])
    assert np.std(errors["dr"]) < np.std(errors["ips"])  # the reward model removes variance


def test_dr_is_robust_to_a_biased_reward_model():
    rng = np.random.default_rng(1)
    terms, truth = _terms(rng, 20000, model_noise=0.0)
    biased = per_slot_terms(terms.r, np.ones_like(terms.w), terms.w, 1.5 * terms.q, 1.5 * terms.dm)
    # same weights (mu folded into w), a reward model 50% too high: DR still lands on the truth
    est = dr(biased)
    assert abs(est.value - truth) < 3 * est.se, (est.value, truth, est.se)
    assert abs(float(np.sum(biased.dm) / np.sum(biased.slots)) - truth) > 0.3 * truth  # model alone: off


def test_per_slot_estimate_charges_a_one_slot_change_for_one_slot():
    """Logging is deterministic in slots 1..9 and uniform over 5 items in slot 0; the target changes
    slot 0 only. Per slot, nine slots keep weight 1: the estimate is far tighter than whole-feed IPS
    (whose weight is 5 when slot 0 matches, else 0)."""
    rng = np.random.default_rng(2)
    rounds, slots = 5000, 10
    rel = rng.uniform(0.02, 0.2, size=(rounds, slots + 4))
    slot0 = rng.integers(0, 5, rounds)
    clicks = np.zeros((rounds, slots))
    shown = np.concatenate([slot0[:, None], 5 + np.tile(np.arange(slots - 1), (rounds, 1))], axis=1)
    clicks = (rng.random((rounds, slots)) < np.take_along_axis(rel, shown, axis=1)).astype(float)
    logging = np.concatenate([np.full((rounds, 1), 0.2), np.ones((rounds, slots - 1))], axis=1)
    target = np.concatenate([(slot0 == 0)[:, None].astype(float), np.ones((rounds, slots - 1))], axis=1)
    truth = float(np.mean(np.concatenate([rel[:, :1], rel[:, 5:5 + slots - 1]], axis=1)))
    per_slot = ips(per_slot_terms(clicks, logging, target))
    whole = (slot0 == 0) * 5.0 * clicks.sum(axis=1) / slots
    whole_se = float(whole.std() / np.sqrt(rounds))
    assert abs(per_slot.value - truth) < 3 * per_slot.se
    assert per_slot.se < 0.5 * whole_se, (per_slot.se, whole_se)
    whole_w = (slot0 == 0) * 5.0
    assert per_slot.ess > 20 * whole_w.sum() ** 2 / np.sum(whole_w ** 2)  # ~36k slots against ~1k feeds


def test_position_based_weights_support_a_reordering_that_per_slot_cannot_see():
    """The logging policy always shows A at slot 0 and B at slot 1; the target swaps them. No slot
    ever matches (per-slot IPS estimates 0); the position-based estimate recovers the truth."""
    rng = np.random.default_rng(3)
    rounds, theta = 20000, np.array([1.0, 0.5])
    rel = np.array([0.2, 0.1])  # A, B
    clicks = (rng.random((rounds, 2)) < theta * rel).astype(float)
    truth = float((theta[0] * rel[1] + theta[1] * rel[0]) / 2)
    per_slot = ips(per_slot_terms(clicks, np.ones((rounds, 2)), np.zeros((rounds, 2))))
    exam = np.tile([theta[1], theta[0]], (rounds, 1))  # A now at slot 1, B at slot 0
    pbm = ips(position_based_terms(clicks, np.tile(theta, (rounds, 1)), np.ones((rounds, 2)), exam,
                                   np.full(rounds, theta.sum())))
    assert per_slot.value == 0.0
    assert abs(pbm.value - truth) < 3 * pbm.se and pbm.se < 0.05 * truth, (pbm.value, truth, pbm.se)
    pbm_sn = snips(position_based_terms(clicks, np.tile(theta, (rounds, 1)), np.ones((rounds, 2)), exam,
                                        np.full(rounds, theta.sum())))
    assert abs(pbm_sn.value - truth) < 3 * pbm_sn.se


def test_position_based_click_model_recovers_examination_and_relevance():
    rng = np.random.default_rng(4)
    n, theta = 60000, np.array([1.0, 0.7, 0.45, 0.3])
    x = rng.normal(size=(n, 3))
    true_rel = 1.0 / (1.0 + np.exp(-(x @ np.array([0.8, -0.5, 0.0]) - 2.0)))
    pos = rng.integers(0, 4, n)
    clicks = rng.random(n) < theta[pos] * true_rel
    model = PositionBasedModel().fit(x, pos, clicks, 4)
    assert np.allclose(model.theta_, theta, atol=0.06), model.theta_
    assert np.corrcoef(model.relevance(x), true_rel)[0, 1] > 0.98
    assert abs(model.predict(x, pos).mean() - clicks.mean()) < 0.01


def test_switch_dr_leaves_a_tiny_logging_probability_to_the_reward_model():
    """One logged slot the logging policy showed with probability 1e-3 and the target shows for sure
    (weight 1,000), not clicked, reward model 0.2: plain DR lands far below the truth (by 200 clicks
    over the slots), SWITCH DR near it; a cap above every weight gives plain DR; the share is reported."""
    t, truth = _terms(np.random.default_rng(5), 2000, 0.3)
    assert abs(switch_dr(t, 20.0).value - truth) < 3 * switch_dr(t, 20.0).se  # no rare slot: both fine
    w, r, q = t.w.copy(), t.r.copy(), t.q.copy()
    w[0, 0], r[0, 0], q[0, 0] = 1000.0, 0.0, 0.2
    rigged = replace(t, w=w, r=r, q=q)
    plain, capped = dr(rigged), switch_dr(rigged, 20.0)
    assert plain.value < truth - 150.0 / t.slots.sum()
    assert abs(capped.value - truth) < 3 * capped.se, (capped.value, truth)
    assert switch_dr(rigged, 1e9).value == plain.value
    share = clipped_share(rigged, 20.0)
    assert share == float(np.mean(rigged.w[rigged.mask] > 20.0)) and share >= 1.0 / rigged.mask.sum()
