"""Closed-loop checks on the simulator: propensities + IPS, and the diversity/accuracy trade-off."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from core.protocols import Features
from core.settings import Settings
from models.rerank import intra_list_similarity
from models.simulator import World, WorldConfig
from services.pipeline import InMemoryState, ItemInfo, ModelSet, ModelSlot, Pipeline
from services.pipeline.impressions import impression_of
from services.pipeline.vectors import category_vectors


def _state(world: World, ctr_prior: bool) -> InMemoryState:
    """Popularity from organic traffic; Beta posteriors from the items' true mean CTR (if asked)."""
    pop: dict[str, float] = {}
    for ev in world.traffic(3000, start_ts=world.config.epoch, rate_per_s=100):
        if ev.is_positive:
            pop[ev.item_id] = pop.get(ev.item_id, 0.0) + 1.0
    catalog = {i: ItemInfo(i, world.item_categories(i), created_at=1.0) for i in world.item_ids}
    popularity = {"all": {i: pop.get(i, 0.0) + 1e-3 for i in world.item_ids}}
    st = InMemoryState(popularity=popularity, catalog=catalog)
    if ctr_prior:
        users = world.user_ids[:50]
        mean = np.mean([world.click_probs(u, world.item_ids) for u in users], axis=0)
        st.bandit["all"] = {i: (1.0 + 20 * m, 1.0 + 20 * (1 - m))
                            for i, m in zip(world.item_ids, mean, strict=True)}
    return st


def test_ips_of_uniform_exploration_from_logged_thompson_slots():
    world = World(WorldConfig(n_users=100, n_items=24, n_categories=4, base_logit=-1.0, seed=3))
    settings = Settings(rerank={"explore_slots": 2, "diversity": "none"})
    pipeline = Pipeline(settings, _state(world, ctr_prior=True))
    weighted, true_vals, props = [], [], []
    for rnd in range(12):
        for user in world.user_ids:
            feed = pipeline.feed(user, n=10, salt=rnd).feed
            imp = impression_of(feed, "test")
            slot = next(k for k, e in enumerate(imp.explore) if e)  # the first exploration slot
            assert 0 < imp.propensities[slot] < 1 and not any(
                p != 1.0 for p, e in zip(imp.propensities, imp.explore, strict=True) if not e)
            pool = [i for i in world.item_ids if i not in {it.item_id for it in feed.items if not it.explore}]
            clicks = world.respond(user, imp.items, now=world.config.epoch, feed_id=imp.feed_id,
                                   propensities=imp.propensities)
            reward = any(c.type == "click" and c.position == slot for c in clicks)
            weighted.append((1.0 / len(pool)) / imp.propensities[slot] * reward)
            true_vals.append(float(np.mean(world.click_probs(user, pool))) / np.log2(slot + 2))
            props.append(imp.propensities[slot])
    ips, truth = float(np.mean(weighted)), float(np.mean(true_vals))
    assert np.ptp(props) > 0.05  # the logging policy is far from uniform
    print(f"IPS {ips:.4f} vs true {truth:.4f} over {len(weighted)} logged slots")
    assert abs(ips - truth) < 0.15 * truth, (ips, truth)


class OracleRanker:
    """Scores with the simulator's hidden click probabilities (isolates the re-ranker's effect)."""

    version = "oracle"

    def __init__(self, world: World) -> None:
        self.world = world

    def score(self, user: Features, items: Sequence[Features]) -> dict[str, np.ndarray]:
        probs = self.world.click_probs(user["user_id"], [it["item_id"] for it in items])
        return {"click": probs.astype(np.float32)}


class NoFeatures:
    def user_features(self, user_id: str) -> Features:
        return {}

    def item_features(self, item_ids: Sequence[str]) -> list[Features]:
        return [{} for _ in item_ids]


def _run(world: World, state: InMemoryState, diversity: str) -> tuple[float, float, float]:
    settings = Settings(rerank={"diversity": diversity, "diversity_lambda": 0.8, "explore_slots": 0,
                                "category_cap": 100, "freshness_boost": 0.0})
    pipeline = Pipeline(settings, state, ModelSlot(ModelSet(ranker=OracleRanker(world))), NoFeatures())
    ils, coverage, value = [], [], []
    for user in world.user_ids[:60]:
        ids = [it.item_id for it in pipeline.feed(user, n=10).feed.items]
        infos = [state.catalog[i] for i in ids]
        ils.append(intra_list_similarity(category_vectors(infos)))
        coverage.append(len({c for it in infos for c in it.categories}))
        value.append(float(world.click_probs(user, ids).sum()))
    return float(np.mean(ils)), float(np.mean(coverage)), float(np.mean(value))


@pytest.mark.parametrize("diversity", ["mmr", "dpp"])
def test_diversity_lowers_similarity_raises_coverage(diversity: str):
    world = World(WorldConfig(n_users=60, n_items=200, n_categories=8, seed=5))
    state = _state(world, ctr_prior=False)
    base = _run(world, state, "none")
    div = _run(world, state, diversity)
    loss = 1.0 - div[2] / base[2]
    print(f"{diversity}: ILS {base[0]:.3f}->{div[0]:.3f}, coverage {base[1]:.2f}->{div[1]:.2f}, "
          f"expected clicks/feed {base[2]:.3f}->{div[2]:.3f} (accuracy loss {loss:.1%})")
    assert div[0] < base[0] and div[1] > base[1]
    assert 0.0 <= loss < 0.3
