"""Closed-loop checks on the simulator: propensities + IPS, and the diversity/accuracy trade-off.

The state is built through the worker's ingest: the catalogue, organic traffic and (for the bandit)
feeds shown to users and their responses, all from background users; the served users are new.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from funnel_events import memory_state

from core.events import Interaction
from core.online import F32
from core.protocols import Features
from core.settings import Settings
from feature_store.online.memory_state import MemoryOnline
from funnel.modelset import ModelSet, ModelSlot
from funnel.pipeline import Pipeline
from funnel.vectors import category_vectors
from models.rerank import intra_list_similarity
from models.simulator import World, WorldConfig
from services.pipeline.impressions import impression_of


def _background(events: Sequence[Interaction]) -> list[Interaction]:
    return [ev.model_copy(update={"user_id": f"bg-{ev.user_id}"}) for ev in events]


def _state(world: World, settings: Settings, shown_rounds: int, shown_users: int = 20) -> MemoryOnline:
    """Popularity from organic traffic; Beta posteriors from ``shown_rounds`` feeds of the whole
    catalogue, in a random order, to each of 20 users, and their clicks (attributed by position)."""
    epoch = world.config.epoch
    events = list(world.traffic(3000, start_ts=epoch - 3600, rate_per_s=1.0))
    rng = np.random.default_rng(0)
    for rnd in range(shown_rounds):
        for user in world.user_ids[:shown_users]:
            shown = [str(i) for i in rng.permutation(world.item_ids)]
            events += world.respond(user, shown, now=epoch - 60, feed_id=f"prior-{rnd}-{user}",
                                    propensities=[1.0] * len(shown))
    return memory_state(settings, world.item_upserts(epoch - 7200), _background(events))


@pytest.mark.parametrize("score_prior,max_se", [(0.0, 0.08), (1.0, 0.15)])
def test_ips_of_uniform_exploration_from_logged_thompson_slots(score_prior: float, max_se: float):
    """Off-policy value of a uniform pick from the exploration pool, estimated from the logged Thompson
    picks and their propensities. The reward is the pick's true click probability (the expectation of
    the click), so what is tested is the propensity weighting. Known bias: 1/propensity, estimated from
    256 posterior draws, is biased up by about (1 - p) / (256 p) (+20% at p = 0.02); the tolerance
    covers it (with 8192 draws the estimate lands within 1 SE). With the prior personalised by the
    ranker's score (the default) the logging policy is further from uniform: larger weights, a wider
    SE, the same unbiasedness."""
    world = World(WorldConfig(n_users=100, n_items=24, n_categories=4, base_logit=-1.0, seed=3))
    settings = Settings(rerank={"explore_slots": 2, "diversity": "none"}, publisher={"feed_size": 10},
                        bandit={"score_prior": score_prior})
    state = _state(world, settings, shown_rounds=1, shown_users=10)
    pipeline = Pipeline(settings, state, clock=lambda: world.config.epoch)
    weighted, true_vals, props = [], [], []
    for rnd in range(24):
        for user in world.user_ids:
            imp = impression_of(pipeline.feed(user, n=10, salt=rnd).feed, "test")
            slot = next(k for k, e in enumerate(imp.explore) if e)  # the first exploration slot
            assert slot == 3 and 0 < imp.propensities[slot] < 1 and not any(
                p != 1.0 for p, e in zip(imp.propensities, imp.explore, strict=True) if not e)
            pool = [i for i in world.item_ids if i not in {it for it, e in zip(imp.items, imp.explore,
                                                                                strict=True) if not e}]
            reward = world.click_prob(user, imp.items[slot])
            weighted.append((1.0 / len(pool)) / imp.propensities[slot] * reward)
            true_vals.append(float(np.mean(world.click_probs(user, pool))))
            props.append(imp.propensities[slot])
    ips, truth = float(np.mean(weighted)), float(np.mean(true_vals))
    se = float(np.std(weighted) / np.sqrt(len(weighted)))
    assert np.ptp(props) > 0.05  # the logging policy is far from uniform
    print(f"IPS {ips:.4f} (SE {se:.4f}) vs true {truth:.4f} over {len(weighted)} logged slots")
    assert se < max_se * truth and abs(ips - truth) < 0.15 * truth, (ips, se, truth)


class Oracle:
    """The simulator's truth as a two-tower: item vectors are one-hot ids and a user's vector is their
    hidden click probability of every item, so the funnel's ``tt_score`` column IS that probability."""

    version = model_version = "oracle"

    def __init__(self, world: World) -> None:
        self.world, self.ids = world, list(world.item_ids)
        self.code = {iid: j for j, iid in enumerate(self.ids)}
        self.dim = len(self.ids)

    def __len__(self) -> int:
        return self.dim

    def search(self, queries: F32, k: int) -> tuple[list[list[str]], F32]:
        top = np.argsort(-queries, axis=1, kind="stable")[:, :k]
        return [[self.ids[j] for j in row] for row in top], np.take_along_axis(queries, top, axis=1)

    def add(self, item_ids: Sequence[str], vectors: F32) -> None:
        raise NotImplementedError

    def vectors(self, item_ids: Sequence[str]) -> tuple[F32, np.ndarray]:
        out = np.zeros((len(item_ids), self.dim), np.float32)
        found = np.array([i in self.code for i in item_ids], bool)
        for row, iid in enumerate(item_ids):
            if iid in self.code:
                out[row, self.code[iid]] = 1.0
        return out, found

    def user_vector(self, user: Features) -> F32:
        return self.world.click_probs(user["user_id"], self.ids).astype(np.float32)


class OracleRanker:
    """A ``FeatureRanker`` that ranks by ``tt_score`` (isolates the re-ranker's effect)."""

    version = "oracle"
    feature_names = ("tt_score",)

    def score_arrays(self, dense: F32) -> dict[str, F32]:
        return {"click": np.nan_to_num(dense[:, 0]).astype(np.float32)}


def _run(world: World, state: MemoryOnline, diversity: str) -> tuple[float, float, float]:
    settings = Settings(rerank={"diversity": diversity, "diversity_lambda": 0.8, "explore_slots": 0,
                                "category_cap": 100, "freshness_boost": 0.0})
    oracle = Oracle(world)
    models = ModelSlot(ModelSet(ranker=OracleRanker(), index=oracle, user_tower=oracle))  # type: ignore[arg-type]
    pipeline = Pipeline(settings, state, models, clock=lambda: world.config.epoch)
    ils, coverage, value = [], [], []
    for user in world.user_ids[:60]:
        feed = pipeline.feed(user, n=10).feed
        assert feed.model_version == "oracle"
        ids = [it.item_id for it in feed.items]
        infos = [info for info in state.items(ids) if info is not None]
        ils.append(intra_list_similarity(category_vectors(infos)))
        coverage.append(len({c for it in infos for c in it.categories}))
        value.append(float(world.click_probs(user, ids).sum()))
    return float(np.mean(ils)), float(np.mean(coverage)), float(np.mean(value))


@pytest.mark.parametrize("diversity", ["mmr", "dpp"])
def test_diversity_lowers_similarity_raises_coverage(diversity: str):
    world = World(WorldConfig(n_users=60, n_items=200, n_categories=8, seed=5))
    state = _state(world, Settings(), shown_rounds=0)
    base = _run(world, state, "none")
    div = _run(world, state, diversity)
    loss = 1.0 - div[2] / base[2]
    print(f"{diversity}: ILS {base[0]:.3f}->{div[0]:.3f}, coverage {base[1]:.2f}->{div[1]:.2f}, "
          f"expected clicks/feed {base[2]:.3f}->{div[2]:.3f} (accuracy loss {loss:.1%})")
    assert div[0] < base[0] and div[1] > base[1]
    assert 0.0 <= loss < 0.3
