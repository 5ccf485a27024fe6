"""The simulator's world served by the real funnel: the known truth behind the experiment and
off-policy benchmarks and tests.

The state is the in-process online store fed through the worker's own plans (item and user upserts,
organic traffic); feeds come from ``funnel.pipeline.Pipeline`` (experiments, arms, exploration and all)
at an injected clock; users respond by the simulator's hidden click model with its position-based
examination ``1 / log2(position + 2)`` (``World.respond``), and their events go back into the state
(closed loop). Every served feed and response is kept as the platform logs them (impression records
and interactions), so reports and off-policy estimates read exactly what they would read in
production. ``expected_clicks`` is the truth: the click probability of a shown list, no sampling.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from core.events import Feed, Interaction
from core.settings import Settings
from feature_store.online.memory_state import MemoryOnline
from funnel.modelset import ModelSet
from funnel.pipeline import FeedResult, Pipeline
from models.content import ContentConfig, ContentEncoder, item_text
from models.simulator import World, WorldConfig
from services.experiments.source import LogRecords
from services.pipeline.impressions import impression_of

F64 = npt.NDArray[np.float64]


def examination(n: int) -> F64:
    """The simulator's examination probability of positions 0..n-1 (``World.respond``)."""
    return np.asarray(1.0 / np.log2(np.arange(n) + 2.0), np.float64)


@dataclass
class SimConfig:
    users: int = 500
    items: int = 600
    seed: int = 0
    warm_events: int = 20_000
    feed_size: int = 10
    gap_s: float = 2.0  # simulated seconds between two feed requests
    world: dict[str, Any] = field(default_factory=dict)  # extra WorldConfig fields
    background: bool = False  # warm traffic from "bg-" copies of the users: the served users are new


def sim_settings(feed_size: int = 10, **sections: Any) -> Settings:
    """Settings for simulations: hashing content vectors (no sentence model), the feed size."""
    base: dict[str, Any] = {"publisher": {"feed_size": feed_size}, "worker": {"content_model": False}}
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return Settings(**base)


class Simulation:
    """A world, its online state, a pipeline over it, and the log of everything served."""

    def __init__(self, cfg: SimConfig, settings: Settings) -> None:
        self.cfg, self.settings = cfg, settings
        self.world = World(WorldConfig(n_users=cfg.users, n_items=cfg.items, seed=cfg.seed, **cfg.world))
        self.now = self.world.config.epoch
        self.state = MemoryOnline(settings)
        self.pipeline = Pipeline(settings, self.state, reader=self.state, clock=lambda: self.now)
        self.log = LogRecords()
        self.encoder = ContentEncoder(ContentConfig(use_model=False))
        self.rng = np.random.default_rng([cfg.seed, 17])
        self._warm()

    def _warm(self) -> None:
        start = self.now - 3600.0
        items, users = self.world.item_upserts(start - 60), self.world.user_upserts(start - 60)
        self.add_items(items)
        self.state.apply_users(users)
        self.log.users += [u.model_dump(mode="json") for u in users]
        events = list(self.world.traffic(self.cfg.warm_events, start_ts=start, rate_per_s=
                                         self.cfg.warm_events / 3000.0))
        if self.cfg.background:
            events = [ev.model_copy(update={"user_id": f"bg-{ev.user_id}"}) for ev in events]
        for k in range(0, len(events), 2000):
            self.apply(events[k:k + 2000])

    def add_items(self, items: Sequence[Any]) -> None:
        vecs = self.encoder.encode([item_text(it.title, it.text) for it in items],
                                   [list(it.categories) for it in items])
        self.state.apply_items(items, {it.item_id: vecs[j].tobytes() for j, it in enumerate(items)})
        self.log.items += [it.model_dump(mode="json") for it in items]

    def apply(self, events: Sequence[Interaction]) -> None:
        self.state.apply_interactions(events)
        self.log.interactions += [ev.model_dump(mode="json") for ev in events]

    def expected_clicks(self, user_id: str, item_ids: Sequence[str]) -> float:
        if not item_ids:
            return 0.0
        probs = self.world.click_probs(user_id, list(item_ids))
        return float(np.sum(examination(len(item_ids)) * probs))

    def serve(self, user_id: str, pipeline: Pipeline | None = None, salt: int = 0) -> FeedResult:
        return (pipeline or self.pipeline).feed(user_id, n=self.cfg.feed_size, salt=salt, now=self.now)

    def respond(self, feed: Feed) -> list[Interaction]:
        """The user's reaction, applied to the state at once and logged with the impression record."""
        items = [it.item_id for it in feed.items]
        events = self.world.respond(feed.user_id, items, now=self.now, feed_id=feed.feed_id,
                                    propensities=[it.propensity for it in feed.items])
        self.log.impressions.append(impression_of(feed, "sim").model_dump(mode="json"))
        self.apply(events)
        return events

    def run(self, requests: int, on_request: Callable[[str, FeedResult], None] | None = None,
            users: Sequence[str] | None = None) -> None:
        """``requests`` feeds to random users (of ``users``), one every ``gap_s`` simulated seconds,
        each answered and applied before the next (``on_request`` sees the state the feed saw)."""
        pool = list(users or self.world.user_ids)
        for _ in range(requests):
            self.now += self.cfg.gap_s
            user = pool[int(self.rng.integers(len(pool)))]
            result = self.serve(user)
            if on_request is not None:
                on_request(user, result)
            self.respond(result.feed)


class NoisyOracle:
    """A model of known quality for the simulator: item vectors are one-hot ids and a user's query is
    the hidden click logit of every item plus noise ``sigma * N(0, 1)`` fixed per (user, item), so its
    errors persist like a trained model's. Serves as the two-tower and the ANN index (the funnel's
    ``tt_score`` column is the noisy logit); :class:`ScoreRanker` ranks by that column."""

    def __init__(self, world: World, sigma: float, seed: int, version: str) -> None:
        self.world, self.sigma, self.seed = world, sigma, seed
        self.version = self.model_version = version
        self.ids = list(world.item_ids)
        self.code = {iid: j for j, iid in enumerate(self.ids)}
        self.dim = len(self.ids)

    def __len__(self) -> int:
        return self.dim

    def scores(self, user_id: str) -> F64:
        p = np.clip(self.world.click_probs(user_id, self.ids), 1e-9, 1 - 1e-9)
        noise = np.random.default_rng([self.seed, int(user_id.lstrip("u") or 0)]).standard_normal(self.dim)
        return np.asarray(np.log(p / (1 - p)) + self.sigma * noise, np.float64)

    def user_vector(self, user: dict[str, Any]) -> npt.NDArray[np.float32]:
        return self.scores(str(user["user_id"])).astype(np.float32)

    def search(self, queries: npt.NDArray[np.float32], k: int) -> tuple[list[list[str]], Any]:
        top = np.argsort(-queries, axis=1, kind="stable")[:, :k]
        return [[self.ids[j] for j in row] for row in top], np.take_along_axis(queries, top, axis=1)

    def vectors(self, item_ids: Sequence[str]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
        out = np.zeros((len(item_ids), self.dim), np.float32)
        found = np.array([i in self.code for i in item_ids], bool)
        for row, iid in enumerate(item_ids):
            if iid in self.code:
                out[row, self.code[iid]] = 1.0
        return out, found

    def add(self, item_ids: Sequence[str], vectors: Any) -> None:
        raise NotImplementedError("the oracle's catalogue is the world's")


class ScoreRanker:
    """A ``FeatureRanker`` that ranks by ``tt_score`` (the oracle's noisy logit)."""

    feature_names = ("tt_score",)

    def __init__(self, version: str) -> None:
        self.version = version

    def score_arrays(self, dense: npt.NDArray[np.float32]) -> dict[str, npt.NDArray[np.float32]]:
        return {"click": np.nan_to_num(dense[:, 0], nan=-1e9).astype(np.float32)}


class OracleModels:
    """A ``ModelResolver`` over noisy oracles: model version ``name`` -> ranker + index + tower."""

    def __init__(self, oracles: dict[str, NoisyOracle]) -> None:
        self.oracles = oracles

    def resolve(self, version: str, current: ModelSet) -> ModelSet | None:
        o = self.oracles.get(version)
        return None if o is None else ModelSet(ranker=ScoreRanker(version), index=o,  # type: ignore[arg-type]
                                               user_tower=o)

    def want(self, versions: set[str]) -> None:
        missing = versions - set(self.oracles)
        if missing:
            raise ValueError(f"no oracle for model versions {sorted(missing)}")
